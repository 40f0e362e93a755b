"""Subjects of several captures in the store: the fused template replaces the subject's row, every
capture is sealed apart, erasure reaches each of them, and a refused addition changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.store import (
    ReferenceNotFound,
    TemplateIntegrityError,
    TemplateStore,
    TooManyCaptures,
)
from tests.store.store_helpers import vector_for


def _mean(captures: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(captures.mean(axis=0), dtype=np.float32)


def _iterated(template_store: TemplateStore, gallery: str) -> dict[int, npt.NDArray[np.float32]]:
    # verify=True: the gallery's size and digest must agree with what is stored
    rows: dict[int, npt.NDArray[np.float32]] = {}
    for ids, vectors in template_store.templates.iterate(gallery):
        rows.update((int(i), v) for i, v in zip(ids, vectors, strict=True))
    return rows


def test_captures_fuse_into_one_searchable_row(template_store: TemplateStore, gallery: str) -> None:
    (first,) = template_store.templates.insert(gallery, [("p", vector_for("p1"))])
    template_store.templates.insert(gallery, [("q", vector_for("q1"))])
    generation = template_store.galleries.state(gallery).generation
    change = template_store.captures.add(
        gallery, "p", [vector_for("p2"), vector_for("p3")], fuse=_mean, most=5
    )
    assert (change.removed, change.captures) == (first, 3) and change.added > first
    captures = np.stack([vector_for(f"p{i}") for i in (1, 2, 3)])
    np.testing.assert_array_equal(template_store.captures.get(gallery, "p"), captures)
    template_id, fused = template_store.templates.get(gallery, "p")
    assert template_id == change.added
    np.testing.assert_allclose(fused, _mean(captures), rtol=1e-6)
    rows = _iterated(template_store, gallery)
    assert sorted(rows) == sorted([change.added, first + 1]) and template_store.templates.count(gallery) == 2
    assert template_store.galleries.state(gallery).generation == generation + 1
    assert template_store.captures.counts(gallery, ["p", "q", "nobody"]) == {"p": 3}
    assert template_store.captures.summary(gallery) == (1, 3)
    # A fourth capture: the fusion is over all four, the old fused row leaves.
    again = template_store.captures.add(gallery, "p", [vector_for("p4")], fuse=_mean, most=5)
    assert again.removed == change.added and again.captures == 4
    assert change.added not in _iterated(template_store, gallery)


def test_refused_additions_change_nothing(template_store: TemplateStore, gallery: str) -> None:
    template_store.templates.insert(gallery, [("p", vector_for("p1"))])
    template_store.captures.add(gallery, "p", [vector_for("p2")], fuse=_mean, most=3)
    state = template_store.galleries.state(gallery)
    with pytest.raises(TooManyCaptures, match="at most 3"):
        template_store.captures.add(gallery, "p", [vector_for("p3"), vector_for("p4")], fuse=_mean, most=3)
    with pytest.raises(ReferenceNotFound):
        template_store.captures.add(gallery, "nobody", [vector_for("x")], fuse=_mean, most=3)

    def broken(_: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        raise RuntimeError("fusion failed")

    with pytest.raises(RuntimeError):
        template_store.captures.add(gallery, "p", [vector_for("p3")], fuse=broken, most=3)
    assert template_store.galleries.state(gallery) == state
    assert template_store.captures.summary(gallery) == (1, 2)


def test_erasing_a_subject_erases_every_capture_from_the_file(
    template_store: TemplateStore, gallery: str, db_path: Path
) -> None:
    template_store.templates.insert(gallery, [("p", vector_for("p1")), ("q", vector_for("q1"))])
    template_store.captures.add(gallery, "p", [vector_for("p2"), vector_for("p3")], fuse=_mean, most=5)
    conn = sqlite3.connect(db_path)
    blobs = [bytes(row[0]) for row in conn.execute("SELECT sealed FROM captures")]
    conn.close()
    assert len(blobs) == 3
    template_store.templates.delete(gallery, "p")
    template_store.checkpoint()
    assert template_store.captures.summary(gallery) == (0, 0)
    on_disk = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))
    for blob in blobs:
        assert blob[21:53] not in on_disk  # secure_delete zeroed the pages, the WAL was truncated
    with pytest.raises(ReferenceNotFound):
        template_store.captures.add(gallery, "p", [vector_for("p4")], fuse=_mean, most=5)
    # The gallery's cascade reaches captures too.
    template_store.captures.add(gallery, "q", [vector_for("q2")], fuse=_mean, most=5)
    template_store.galleries.delete(gallery)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM captures").fetchone()[0] == 0
    conn.close()


def test_a_capture_blob_never_opens_as_a_template(
    template_store: TemplateStore, gallery: str, db_path: Path
) -> None:
    template_store.templates.insert(gallery, [("p", vector_for("p1"))])
    change = template_store.captures.add(gallery, "p", [vector_for("p2")], fuse=_mean, most=5)
    template_store.close()
    conn = sqlite3.connect(db_path)
    (capture_id, blob) = conn.execute(
        "SELECT capture_id, sealed FROM captures ORDER BY capture_id"
    ).fetchone()
    # An attacker with the file moves a capture (id aligned) into the searched row.
    conn.execute(
        "UPDATE templates SET template_id = ?, sealed = ? WHERE template_id = ?",
        (capture_id, blob, change.added),
    )
    conn.commit()
    conn.close()
    with (
        TemplateStore.open(db_path, template_store.sealer) as reopened,
        pytest.raises(TemplateIntegrityError),
    ):
        reopened.templates.get(gallery, "p")
