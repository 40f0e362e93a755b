"""Schema version 2: calibrations, the FPIR a threshold follows, and re-keyed templates."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from safepassage.store import (
    GalleryNotFound,
    InvalidRecord,
    InvalidTemplate,
    StoreCorrupted,
    TemplateSealer,
    TemplateStore,
)
from safepassage.store.schema import SCHEMA_VERSION
from tests.store.store_helpers import DIMENSION, make_record, vector_for


def test_calibration_round_trip_and_cascade(template_store: TemplateStore, gallery: str) -> None:
    assert template_store.galleries.calibration(gallery) is None
    record = template_store.galleries.set_calibration(gallery, b"scores-1", 0.01, 0.42)
    assert (record.threshold, record.target_fpir) == (0.42, 0.01)
    assert template_store.galleries.calibration(gallery) == (b"scores-1", None)
    # None keeps the stored calibration while changing the policy back to a fixed threshold.
    record = template_store.galleries.set_calibration(gallery, None, None, 0.5)
    assert (record.threshold, record.target_fpir) == (0.5, None)
    assert template_store.galleries.calibration(gallery) == (b"scores-1", None)
    template_store.galleries.delete(gallery)
    with pytest.raises(GalleryNotFound):
        template_store.galleries.calibration(gallery)
    with template_store._db.read("count") as conn:  # the cascade removed the row
        assert conn.execute("SELECT count(*) FROM gallery_calibrations").fetchone()[0] == 0


def test_target_fpir_out_of_range_is_refused(template_store: TemplateStore, gallery: str) -> None:
    with pytest.raises(InvalidRecord):
        template_store.galleries.create(dataclasses.replace(make_record("h"), target_fpir=1.5))


def test_rewrite_replaces_vectors_keeps_references_and_digest_agrees(
    template_store: TemplateStore, gallery: str
) -> None:
    refs = [f"r{i}" for i in range(20)]
    ids = template_store.templates.insert(gallery, [(r, vector_for(r)) for r in refs])
    before = template_store.galleries.state(gallery)
    fresh = np.stack([-vector_for(r) for r in refs]).astype(np.float32)
    template_store.templates.rewrite(gallery, np.asarray(ids, np.int64), fresh, protection_version=3)
    after = template_store.galleries.state(gallery)
    assert after.generation == before.generation + 1 and after.size == before.size
    assert after.digest == template_store.content_digest(ids, fresh)
    assert template_store.galleries.get(gallery).protection_version == 3
    got_ids, got = next(template_store.templates.iterate(gallery, verify=True))
    assert list(got_ids) == ids and np.array_equal(got, fresh)
    assert template_store.templates.template_ids(gallery, refs) == dict(zip(refs, ids, strict=True))


def test_rewrite_must_cover_exactly_the_gallery(template_store: TemplateStore, gallery: str) -> None:
    ids = template_store.templates.insert(gallery, [(f"r{i}", vector_for(f"r{i}")) for i in range(3)])
    state = template_store.galleries.state(gallery)
    vectors = np.zeros((2, DIMENSION), np.float32)
    with pytest.raises(StoreCorrupted):
        template_store.templates.rewrite(gallery, np.asarray(ids[:2], np.int64), vectors, None)
    with pytest.raises(InvalidTemplate):
        template_store.templates.rewrite(gallery, np.asarray(ids, np.int64), vectors, None)
    assert template_store.galleries.state(gallery) == state


def test_version_1_file_upgrades_in_place(db_path: Path, sealer: TemplateSealer) -> None:
    with TemplateStore.open(db_path, sealer) as first:
        first.galleries.create(make_record("old"))
        first.templates.insert("old", [("a", vector_for("a"))])
    # Make the file look as version 1 wrote it.
    conn = sqlite3.connect(db_path)
    conn.executescript(
        "DROP TABLE captures;"
        "DROP INDEX templates_quarantined;"
        "ALTER TABLE templates DROP COLUMN quarantined;"
        "DROP TABLE gallery_calibrations;"
        "ALTER TABLE galleries DROP COLUMN target_fpir;"
        "ALTER TABLE galleries DROP COLUMN protection_version;"
        "DELETE FROM schema_migrations WHERE version > 1;"
    )
    conn.close()
    with TemplateStore.open(db_path, sealer) as reopened:
        record = reopened.galleries.get("old")
        assert (record.target_fpir, record.protection_version) == (None, None)
        assert reopened.templates.count("old") == 1
        reopened.galleries.set_calibration("old", b"x", 0.003, 0.3)
        # Version 4: the one-capture subject of version 1 takes more captures.
        change = reopened.captures.add("old", "a", [vector_for("a2")], fuse=lambda m: m.mean(0), most=5)
        assert change.captures == 2 and reopened.templates.count("old") == 1
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION == 4
    conn.close()
