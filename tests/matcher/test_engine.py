"""The Matcher over a real SQLite store: results agree with brute force, snapshots are
written only when something changed and trusted only when they match the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from safepassage import store
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, Metric, exact_search
from safepassage.matcher.errors import InvalidVector

DIM = 32


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    yield tmp_path, os.urandom(32)


def _matcher(folder: Path, key: bytes) -> tuple[Matcher, store.TemplateStore]:
    template_store = store.TemplateStore.open(folder / "db.sqlite3", store.TemplateSealer(key))
    matcher = Matcher(template_store, folder / "snapshots", key[::-1])
    matcher.load()
    return matcher, template_store


def _spec(gallery_id: str, metric: Metric) -> GallerySpec:
    threshold = 0.5 if metric is Metric.COSINE else 1.0
    return GallerySpec(gallery_id, GalleryPurpose.WATCHLIST, "test-model", DIM, metric, threshold)


@pytest.mark.parametrize("metric", list(Metric))
def test_identify_agrees_with_brute_force(opened: tuple[Path, bytes], metric: Metric) -> None:
    folder, key = opened
    matcher, template_store = _matcher(folder, key)
    matcher.create_gallery(_spec("g", metric))
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(400, DIM)).astype(np.float32)
    outcomes = matcher.insert_many("g", [(f"r{i}", v) for i, v in enumerate(vectors)])
    assert outcomes == [None] * 400
    probes = rng.normal(size=(6, DIM)).astype(np.float32)
    results = matcher.identify("g", probes, top_k=8)
    reference = exact_search(vectors, np.arange(400, dtype=np.int64), probes, 8, metric)
    for result, ids, scores in zip(results, reference.ids, reference.scores, strict=True):
        assert [c.reference_id for c in result.candidates] == [f"r{i}" for i in ids]
        np.testing.assert_allclose([c.score for c in result.candidates], scores, atol=1e-4)
        assert [c.match for c in result.candidates] == [
            metric.is_match(float(s), result.threshold) for s in scores
        ]
    template_store.close()


def test_insert_many_reports_each_item(opened: tuple[Path, bytes]) -> None:
    folder, key = opened
    matcher, template_store = _matcher(folder, key)
    matcher.create_gallery(_spec("g", Metric.L2))
    matcher.insert("g", "taken", np.zeros(DIM))
    outcomes = matcher.insert_many(
        "g",
        [
            ("a", np.ones(DIM)),
            ("taken", np.ones(DIM)),
            ("b", np.ones(3)),
            ("a", np.ones(DIM)),
            ("bad id!", np.ones(DIM)),
        ],
    )
    assert outcomes[0] is None
    assert [type(o).__name__ for o in outcomes[1:]] == [
        "DuplicateReference",
        "InvalidVector",
        "DuplicateReference",
        "InvalidReferenceId",
    ]
    assert matcher.count("g") == 2
    with pytest.raises(InvalidVector):
        matcher.identify("g", np.full(DIM, np.nan))
    template_store.close()


def test_snapshots_are_written_when_changed_and_verified_on_load(opened: tuple[Path, bytes]) -> None:
    folder, key = opened
    matcher, template_store = _matcher(folder, key)
    matcher.create_gallery(_spec("g", Metric.COSINE))
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(50, DIM)).astype(np.float32)
    matcher.insert_many("g", [(f"r{i}", v) for i, v in enumerate(vectors)])
    assert matcher.save_snapshots() == 1
    assert matcher.save_snapshots() == 0  # nothing changed since
    template_store.close()

    # A snapshot that matches the store is used.
    matcher, template_store = _matcher(folder, key)
    assert matcher.save_snapshots() == 0
    assert matcher.identify("g", vectors[7])[0].candidates[0].reference_id == "r7"
    # A change made behind the snapshot's back (a crash before the next snapshot) makes it stale.
    matcher.delete("g", "r7")
    template_store.close()
    matcher, template_store = _matcher(folder, key)
    assert matcher.count("g") == 49
    assert matcher.identify("g", vectors[7])[0].candidates[0].reference_id != "r7"
    template_store.close()
