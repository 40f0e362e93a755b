"""Quarantined rows (issue #15): kept aside, out of the gallery's state, listed, and deletable."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.store import (
    ReferenceNotFound,
    StoreCorrupted,
    TemplateIntegrityError,
    TemplateStore,
    gallery_digest,
)
from safepassage.store.errors import DuplicateReference
from safepassage.store.quarantine import QuarantineReason
from tests.store.store_helpers import vector_for

Items = Callable[..., list[tuple[str, npt.NDArray[np.float32]]]]


def _live(template_store: TemplateStore, gallery: str) -> tuple[list[int], npt.NDArray[np.float32]]:
    batches = list(template_store.templates.iterate(gallery, batch_size=3))
    ids = [int(i) for b, _ in batches for i in b]
    return ids, np.concatenate([v for _, v in batches])


def test_a_quarantined_row_leaves_the_gallerys_state_but_stays_in_the_file(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    ids = template_store.templates.insert(gallery, items("a", 8))
    before = template_store.galleries.state(gallery)
    assert template_store.quarantine.add(gallery, [ids[2], ids[5]], QuarantineReason.OUT_OF_BOUNDS) == 2
    # Again, or an id of no row of this gallery: nothing more.
    assert template_store.quarantine.add(gallery, [ids[2], 10**9], QuarantineReason.UNREADABLE) == 0

    state = template_store.galleries.state(gallery)
    assert (state.size, state.generation) == (6, before.generation + 1)
    live_ids, vectors = _live(template_store, gallery)  # verify=True: the digest agrees with the live rows
    assert live_ids == [i for i in ids if i not in (ids[2], ids[5])]
    assert state.digest == gallery_digest(template_store.sealer, np.asarray(live_ids), vectors)
    assert template_store.templates.count(gallery) == 6
    assert template_store.quarantine.count(gallery) == 2
    listed = template_store.quarantine.listing(gallery)
    assert [(q.template_id, q.reference_id, q.reason) for q in listed] == [
        (ids[2], "a-00002", QuarantineReason.OUT_OF_BOUNDS),
        (ids[5], "a-00005", QuarantineReason.OUT_OF_BOUNDS),
    ]
    with closing(sqlite3.connect(template_store.path)) as raw:
        assert raw.execute("SELECT count(*) FROM templates").fetchone()[0] == 8


def test_a_quarantined_row_is_not_read_keeps_its_reference_and_is_deleted_like_any_row(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    ids = template_store.templates.insert(gallery, items("a", 4))
    template_store.quarantine.add(gallery, [ids[1]], QuarantineReason.OUT_OF_BOUNDS)
    with pytest.raises(ReferenceNotFound, match="quarantined"):
        template_store.templates.get(gallery, "a-00001")
    with pytest.raises(DuplicateReference, match="quarantined"):
        template_store.templates.insert(gallery, [("a-00001", vector_for("new"))])
    state = template_store.galleries.state(gallery)

    assert template_store.templates.delete(gallery, "a-00001") == ids[1]
    # It had already left the gallery's state: size and digest are unchanged.
    after = template_store.galleries.state(gallery)
    assert (after.size, after.digest) == (state.size, state.digest)
    assert template_store.quarantine.count(gallery) == 0
    template_store.templates.insert(gallery, [("a-00001", vector_for("new"))])
    assert template_store.templates.count(gallery) == 4
    _live(template_store, gallery)


def test_a_rewrite_covers_the_live_rows_and_leaves_the_quarantined(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    ids = template_store.templates.insert(gallery, items("a", 5))
    template_store.quarantine.add(gallery, [ids[0]], QuarantineReason.OUT_OF_BOUNDS)
    live_ids, vectors = _live(template_store, gallery)
    with pytest.raises(StoreCorrupted):
        template_store.templates.rewrite(gallery, np.asarray(ids, np.int64), np.zeros((5, 16), np.float32), 1)
    template_store.templates.rewrite(gallery, np.asarray(live_ids, np.int64), vectors * 2, 1)
    assert np.allclose(_live(template_store, gallery)[1], vectors * 2)
    assert template_store.quarantine.count(gallery) == 1


def test_rows_that_do_not_open_are_reported_and_the_rest_still_verified(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    ids = template_store.templates.insert(gallery, items("a", 7))
    with closing(sqlite3.connect(template_store.path, isolation_level=None)) as raw:
        raw.execute(
            "UPDATE templates SET sealed = (SELECT sealed FROM templates WHERE template_id = ?)"
            " WHERE template_id = ?",
            (ids[0], ids[4]),
        )
    with pytest.raises(TemplateIntegrityError):
        list(template_store.templates.iterate(gallery))
    unreadable: list[int] = []
    batches = list(template_store.templates.iterate(gallery, batch_size=3, unreadable=unreadable))
    assert unreadable == [ids[4]]
    assert [int(i) for b, _ in batches for i in b] == [i for i in ids if i != ids[4]]
    template_store.quarantine.add(gallery, unreadable, QuarantineReason.UNREADABLE)
    assert len(_live(template_store, gallery)[0]) == 6


def test_deleting_a_gallery_erases_its_quarantined_rows_too(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    ids = template_store.templates.insert(gallery, items("a", 3))
    template_store.quarantine.add(gallery, ids[:1], QuarantineReason.OUT_OF_BOUNDS)
    assert template_store.galleries.delete(gallery) == 3
    with closing(sqlite3.connect(template_store.path)) as raw:
        assert raw.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
