"""TemplateStore: galleries, templates, atomic batches, ids, errors and the file itself."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage import store
from safepassage.store import (
    DuplicateReference,
    GalleryExists,
    GalleryNotFound,
    GalleryRecord,
    InvalidRecord,
    InvalidTemplate,
    ReferenceNotFound,
    SchemaMismatch,
    StoreClosed,
    StoreCorrupted,
    TemplateIntegrityError,
    TemplateSealer,
    TemplateStore,
)
from tests.store.store_helpers import DIMENSION, make_record, vector_for

Items = Callable[..., list[tuple[str, npt.NDArray[np.float32]]]]


# -- galleries -------------------------------------------------------------------


def test_gallery_lifecycle(template_store: TemplateStore) -> None:
    for name in ("b", "a", "c"):
        template_store.galleries.create(make_record(name))
    assert [g.gallery_id for g in template_store.galleries.records()] == ["a", "b", "c"]
    record = template_store.galleries.get("b")
    assert (record.dimension, record.metric, record.purpose) == (DIMENSION, "cosine", "watchlist")
    updated = template_store.galleries.update_threshold("b", 0.75)
    assert updated.threshold == 0.75 and template_store.galleries.get("b").threshold == 0.75
    with pytest.raises(GalleryExists, match="'b'"):
        template_store.galleries.create(make_record("b"))
    assert template_store.galleries.delete("b") == 0
    with pytest.raises(GalleryNotFound, match="'b'"):
        template_store.galleries.get("b")
    for call in (
        lambda: template_store.galleries.delete("zz"),
        lambda: template_store.galleries.update_threshold("zz", 0.1),
        lambda: template_store.galleries.state("zz"),
        lambda: template_store.templates.count("zz"),
        lambda: template_store.templates.insert("zz", [("r", vector_for("r"))]),
        lambda: template_store.templates.delete("zz", "r"),
        lambda: template_store.templates.get("zz", "r"),
        lambda: template_store.templates.reference_ids("zz", [1]),
        lambda: template_store.templates.template_ids("zz", ["r"]),
        lambda: template_store.templates.iterate("zz"),
    ):
        with pytest.raises(GalleryNotFound):
            call()


@pytest.mark.parametrize(
    "change",
    [
        {"gallery_id": ""},
        {"gallery_id": "x" * 129},
        {"gallery_id": "tab\there"},
        {"dimension": 0},
        {"dimension": True},
        {"dimension": 5000},
        {"threshold": float("nan")},
        {"metric": ""},
        {"created_at": float("inf")},
    ],
)
def test_malformed_gallery_records_are_rejected(change: dict[str, object]) -> None:
    fields = {**make_record().__dict__, **change}
    with pytest.raises(InvalidRecord):
        GalleryRecord(**fields)


def test_update_threshold_rejects_non_finite(template_store: TemplateStore, gallery: str) -> None:
    with pytest.raises(InvalidRecord):
        template_store.galleries.update_threshold(gallery, float("inf"))


# -- templates -------------------------------------------------------------------


def test_insert_get_iterate_delete_round_trip(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    batch = items("r", 10)
    ids = template_store.templates.insert(gallery, batch)
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert template_store.templates.count(gallery) == 10
    for (ref, vector), tid in zip(batch, ids, strict=True):
        got_id, got = template_store.templates.get(gallery, ref)
        assert got_id == tid and got.dtype == np.float32
        assert got.tobytes() == vector.tobytes()

    chunks = list(template_store.templates.iterate(gallery, batch_size=3))
    assert [len(c[0]) for c in chunks] == [3, 3, 3, 1]
    all_ids = np.concatenate([c[0] for c in chunks])
    all_vectors = np.concatenate([c[1] for c in chunks])
    assert all_ids.dtype == np.int64 and all_vectors.dtype == np.float32
    assert all_ids.tolist() == ids
    np.testing.assert_array_equal(all_vectors, np.stack([v for _, v in batch]))

    assert template_store.templates.reference_ids(gallery, [ids[0], ids[3], 999_999, -1]) == {
        ids[0]: "r-00000",
        ids[3]: "r-00003",
    }
    assert template_store.templates.reference_ids(gallery, np.array(ids[:2], dtype=np.int64)) == {
        ids[0]: "r-00000",
        ids[1]: "r-00001",
    }
    assert template_store.templates.template_ids(gallery, ["r-00002", "nope"]) == {"r-00002": ids[2]}
    page = template_store.templates.listing(gallery, after_template_id=ids[7], limit=5)
    assert page == [store.StoredTemplate(ids[8], "r-00008"), store.StoredTemplate(ids[9], "r-00009")]

    assert template_store.templates.delete(gallery, "r-00004") == ids[4]
    with pytest.raises(ReferenceNotFound, match="r-00004"):
        template_store.templates.get(gallery, "r-00004")
    with pytest.raises(ReferenceNotFound):
        template_store.templates.delete(gallery, "r-00004")
    assert template_store.templates.count(gallery) == 9
    assert ids[4] not in np.concatenate([c[0] for c in template_store.templates.iterate(gallery)])


def test_same_reference_in_two_galleries_is_fine(template_store: TemplateStore, gallery: str) -> None:
    template_store.galleries.create(make_record("other"))
    a = template_store.templates.insert(gallery, [("p", vector_for("p"))])
    b = template_store.templates.insert("other", [("p", vector_for("q"))])
    assert a != b
    assert template_store.templates.get("other", "p")[1].tobytes() == vector_for("q").tobytes()


def test_a_batch_is_all_or_nothing(template_store: TemplateStore, gallery: str, items: Items) -> None:
    template_store.templates.insert(gallery, items("a", 3))
    before = template_store.galleries.state(gallery)

    repeated = [*items("b", 4), ("b-00001", vector_for("x"))]
    with pytest.raises(DuplicateReference, match=r"'b-00001'.*'g'"):
        template_store.templates.insert(gallery, repeated)
    existing = [*items("c", 4), ("a-00002", vector_for("x"))]
    with pytest.raises(DuplicateReference, match=r"'a-00002' already exists in gallery 'g'"):
        template_store.templates.insert(gallery, existing)
    bad_vector = [*items("d", 4), ("d-x", np.full(DIMENSION, np.nan, np.float32))]
    with pytest.raises(InvalidTemplate):
        template_store.templates.insert(gallery, bad_vector)

    assert template_store.galleries.state(gallery) == before
    assert template_store.templates.template_ids(gallery, ["b-00000", "c-00000", "d-00000"]) == {}
    assert template_store.templates.insert(gallery, []) == []
    assert template_store.galleries.state(gallery) == before


@pytest.mark.parametrize(
    "item",
    [
        ("r", np.ones((2, DIMENSION), np.float32)),
        ("r", np.ones(DIMENSION - 1, np.float32)),
        ("r", np.array([np.inf] + [0.0] * (DIMENSION - 1))),
        ("r", np.full(DIMENSION, 1e39)),  # finite in float64, inf in float32
        ("r", np.array(["a"] * DIMENSION)),
        ("r", np.zeros(DIMENSION, np.complex64)),
        ("r", "not a vector"),
        ("", np.zeros(DIMENSION, np.float32)),
        ("x" * 257, np.zeros(DIMENSION, np.float32)),
        ("new\nline", np.zeros(DIMENSION, np.float32)),
        (7, np.zeros(DIMENSION, np.float32)),
        ["r", np.zeros(DIMENSION, np.float32)],
    ],
)
def test_malformed_templates_are_rejected(template_store: TemplateStore, gallery: str, item: object) -> None:
    with pytest.raises(InvalidTemplate):
        template_store.templates.insert(gallery, [item])  # type: ignore[list-item]
    assert template_store.templates.count(gallery) == 0


def test_integer_and_float64_vectors_are_stored_as_float32(
    template_store: TemplateStore, gallery: str
) -> None:
    ints = np.arange(DIMENSION)
    template_store.templates.insert(gallery, [("i", ints), ("f", ints.astype(np.float64) / 3)])
    assert template_store.templates.get(gallery, "i")[1].tolist() == ints.astype(np.float32).tolist()
    assert template_store.templates.get(gallery, "f")[1].tobytes() == (ints / 3).astype(np.float32).tobytes()


def test_template_ids_are_never_reused(template_store: TemplateStore, gallery: str, items: Items) -> None:
    ids = template_store.templates.insert(gallery, items("a", 5))
    template_store.templates.delete(gallery, "a-00004")  # the highest id
    (again,) = template_store.templates.insert(gallery, [("a-00004", vector_for("a-00004"))])
    assert again > max(ids)
    template_store.galleries.delete(gallery)
    template_store.galleries.create(make_record(gallery))
    (fresh,) = template_store.templates.insert(gallery, [("z", vector_for("z"))])
    assert fresh > again
    path, sealer = template_store.path, template_store.sealer
    template_store.close()
    with TemplateStore.open(path, sealer) as reopened:
        reopened.templates.delete(gallery, "z")
        (after,) = reopened.templates.insert(gallery, [("z", vector_for("z"))])
    assert after > fresh


def test_generation_counts_batches_and_deletes(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    assert template_store.galleries.state(gallery).generation == 0
    template_store.templates.insert(gallery, items("a", 4))
    template_store.templates.insert(gallery, items("b", 1))
    template_store.templates.delete(gallery, "a-00000")
    state = template_store.galleries.state(gallery)
    assert (state.generation, state.size) == (3, 4)
    template_store.galleries.update_threshold(gallery, 0.2)
    assert template_store.galleries.state(gallery).generation == 3


def test_delete_gallery_cascades(template_store: TemplateStore, gallery: str, items: Items) -> None:
    template_store.galleries.create(make_record("keep"))
    template_store.templates.insert(gallery, items("a", 6))
    template_store.templates.insert("keep", items("a", 2))
    assert template_store.galleries.delete(gallery) == 6
    with sqlite3.connect(template_store.path) as raw:
        assert raw.execute("SELECT count(*) FROM templates").fetchone()[0] == 2
    assert template_store.templates.count("keep") == 2


# -- integrity -------------------------------------------------------------------


def test_tampering_in_the_file_is_detected(template_store: TemplateStore, gallery: str, items: Items) -> None:
    ids = template_store.templates.insert(gallery, items("a", 4))
    raw = sqlite3.connect(template_store.path, isolation_level=None)
    try:
        # A sealed blob copied onto another row fails to open there.
        raw.execute(
            "UPDATE templates SET sealed = (SELECT sealed FROM templates WHERE template_id = ?)"
            " WHERE template_id = ?",
            (ids[0], ids[1]),
        )
        with pytest.raises(TemplateIntegrityError, match=f"template {ids[1]}"):
            template_store.templates.get(gallery, "a-00001")
        with pytest.raises(TemplateIntegrityError):
            list(template_store.templates.iterate(gallery))
        # A row removed behind the store's back is caught by the digest check.
        raw.execute("DELETE FROM templates WHERE template_id IN (?, ?)", (ids[1], ids[2]))
        with pytest.raises(StoreCorrupted, match="do not match"):
            list(template_store.templates.iterate(gallery))
        ((ids_left, _),) = template_store.templates.iterate(gallery, verify=False)
        assert len(ids_left) == 2
    finally:
        raw.close()


# -- the file --------------------------------------------------------------------


def test_file_is_owner_only_with_wal_and_schema_version(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    template_store.templates.insert(gallery, items("a", 2))
    path = template_store.path
    for suffix in ("", "-wal"):
        assert stat.S_IMODE(Path(f"{path}{suffix}").stat().st_mode) == 0o600, suffix
    # No memory-mapped -shm file: the WAL index lives in the process's memory (safepassage.store.connections).
    assert not Path(f"{path}-shm").exists()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == (
            store.SCHEMA_VERSION
        )
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reopening_with_another_key_fails_fast(db_path: Path, sealer: TemplateSealer) -> None:
    TemplateStore.open(db_path, sealer).close()
    with pytest.raises(SchemaMismatch, match="key does not match"):
        TemplateStore.open(db_path, TemplateSealer(TemplateSealer.generate_key()))
    TemplateStore.open(db_path, sealer).close()


def test_a_newer_schema_is_refused(db_path: Path, sealer: TemplateSealer) -> None:
    TemplateStore.open(db_path, sealer).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
    with pytest.raises(SchemaMismatch, match="99"):
        TemplateStore.open(db_path, sealer)


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path, sealer: TemplateSealer) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreCorrupted):
        TemplateStore.open(path, sealer)


def test_closed_store_refuses_calls(template_store: TemplateStore, gallery: str) -> None:
    template_store.close()
    template_store.close()  # idempotent
    with pytest.raises(StoreClosed):
        template_store.templates.count(gallery)
    with pytest.raises(StoreClosed):
        template_store.templates.insert(gallery, [("r", vector_for("r"))])
