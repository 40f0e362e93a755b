"""GalleryIndex: background rebuilds that lose no mutation, recall reported, snapshots of either kind,
and the Matcher moving a growing gallery from exact to approximate search."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safepassage import store
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, Metric, SnapshotRejected, exact_search
from safepassage.matcher import gallery_index as gallery_index_module
from safepassage.matcher import snapshot as snap
from safepassage.matcher.errors import IndexOverBudget
from safepassage.matcher.gallery_index import GalleryIndex, measure_recall
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.index_policy import GiB, IndexPolicy, build
from safepassage.matcher.rwlock import ReadWriteLock
from tests.matcher.test_approximate import D, clustered_templates

# Small galleries go approximate from 3000 templates, with 64 lists.
POLICY = IndexPolicy(exact_below=3000, min_nlist=16, max_nlist=64, min_nprobe=16, min_train_size=3000)


class _PausedBuild:
    """Holds every background build between training and swap until released (no timing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trained = threading.Event()
        self.release = threading.Event()

        def paused(*args: Any, **kwargs: Any) -> Any:
            index = build(*args, **kwargs)
            self.trained.set()
            assert self.release.wait(60)
            return index

        monkeypatch.setattr(gallery_index_module, "build", paused)


def _add(index: GalleryIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
    with index.lock.writing():
        index.add(ids, vectors)


def _remove(index: GalleryIndex, ids: np.ndarray) -> int:
    with index.lock.writing():
        return index.remove(ids)


def test_background_rebuild_keeps_every_change_made_during_it(monkeypatch: pytest.MonkeyPatch) -> None:
    data = clustered_templates(4000, 40)
    paused = _PausedBuild(monkeypatch)
    index = GalleryIndex.empty(D, Metric.L2, POLICY, ReadWriteLock(), name="g")
    _add(index, data.ids[:2999], data.gallery[:2999])
    assert index.kind == "flat" and not index.rebuilding and index.recall == 1.0
    _add(index, data.ids[2999:3000], data.gallery[2999:3000])  # reaches exact_below
    assert index.rebuilding
    assert paused.trained.wait(60)

    # While the new index is built: inserts, deletes of old and of new templates, searches.
    _add(index, data.ids[3000:], data.gallery[3000:])
    assert _remove(index, data.ids[:200]) == 200
    assert _remove(index, data.ids[3500:3550]) == 50
    with index.lock.reading():
        assert index.kind == "flat" and index.size == 3750
        assert index.search(data.gallery[3000:3001], 1).ids[0, 0] == data.ids[3000]
    paused.release.set()
    assert index.wait_for_rebuild(60)

    assert index.kind == "ivf_hnsw_sq8" and index.builds == 1
    assert index.plan.kind == "approximate" and index.plan.trained_for == 3000
    keep = np.r_[200:3500, 3550:4000]
    ids, vectors = index.contents()
    assert sorted(ids.tolist()) == sorted(data.ids[keep].tolist())
    np.testing.assert_array_equal(vectors[np.argsort(ids)], data.gallery[keep][np.argsort(data.ids[keep])])
    # Templates added during the build are searchable in the new index; removed ones are gone.
    probes = np.concatenate([data.mated, data.non_mated])
    found = index.search(probes, 5)
    want = exact_search(data.gallery[keep], data.ids[keep], probes, 5, Metric.L2)
    assert (found.ids[:, 0] == want.ids[:, 0]).mean() >= 0.95
    assert not set(found.ids.ravel()) & set(data.ids[:200].tolist())
    report = index.recall_report
    assert report is not None and report.queries == 300
    assert 0.9 <= index.recall <= 1.0 and 0.9 <= report.at_10 <= 1.0


def test_growth_retrains_and_shrinking_goes_back_to_flat() -> None:
    data = clustered_templates(6400, 20, Metric.COSINE)
    index = GalleryIndex.empty(D, Metric.COSINE, POLICY, name="g")
    _add(index, data.ids[:3000], data.gallery[:3000])
    assert index.wait_for_rebuild(60)
    assert index.kind == "ivf_hnsw_sq8" and index.plan.trained_for == 3000
    _add(index, data.ids[3000:], data.gallery[3000:])  # 6400 >= 2 x 3000
    assert index.wait_for_rebuild(60)
    assert index.builds == 2 and index.plan.trained_for == 6400
    # Shrunk by growth^2: retrained; approximate down to half of exact_below, then exact again.
    _remove(index, data.ids[:4900])
    assert index.wait_for_rebuild(60)
    assert index.kind == "ivf_hnsw_sq8" and index.plan.trained_for == 1500 and index.builds == 3
    _remove(index, data.ids[4900:5000])
    assert index.wait_for_rebuild(60)
    assert index.kind == "flat" and index.recall == 1.0 and index.builds == 4
    assert index.size == 1400


def test_failed_rebuild_keeps_the_index_and_budget_is_checked(caplog: pytest.LogCaptureFixture) -> None:
    data = clustered_templates(3000, 10)
    # Room for a flat gallery of 2999 templates but not for an approximate one of 3000.
    budget = int(2999 * (4 * D + 8) * 1.2) + 1
    policy = IndexPolicy(exact_below=3000, memory_budget_bytes=budget, min_nlist=16, max_nlist=64)
    index = GalleryIndex.empty(D, Metric.L2, policy, name="tight")
    _add(index, data.ids[:2999], data.gallery[:2999])
    with pytest.raises(IndexOverBudget, match="milvus"):
        index.check_room(1)
    index.check_room(0)
    with caplog.at_level(logging.ERROR, logger="safepassage.matcher.gallery_index"):
        _add(index, data.ids[2999:], data.gallery[2999:])
        assert index.wait_for_rebuild(60)
    assert "rebuild failed" in caplog.text
    assert index.kind == "flat" and index.size == 3000
    np.testing.assert_array_equal(index.search(data.mated, 1).ids[:, 0], data.ids[: len(data.mated)])
    # It is not retried on every insert.
    assert not index.maybe_rebuild()


def test_closed_index_starts_no_rebuild() -> None:
    data = clustered_templates(3000, 10)
    index = GalleryIndex.empty(D, Metric.L2, POLICY)
    index.close()
    _add(index, data.ids, data.gallery)
    assert not index.rebuilding and index.kind == "flat"


@pytest.mark.parametrize("metric", list(Metric))
def test_measured_recall_of_exact_search_is_one(metric: Metric) -> None:
    data = clustered_templates(2000, 10, metric)
    flat = FlatIndex(D, metric)
    flat.add(data.ids, data.gallery)
    report = measure_recall(flat, data.ids, data.gallery, queries=100)
    assert report.at_1 == 1.0 and report.at_10 == 1.0 and report.queries == 100


def test_snapshots_carry_the_index_kind_and_refuse_version_1(tmp_path: Path) -> None:
    data = clustered_templates(3200, 20)
    index = GalleryIndex.empty(D, Metric.L2, POLICY, name="g")
    _add(index, data.ids, data.gallery)
    assert index.wait_for_rebuild(60) and index.kind == "ivf_hnsw_sq8"
    key = os.urandom(32)
    path = tmp_path / "g.snapshot"
    header = snap.SnapshotHeader("g", 3, 3200, "ab" * 32, D, "l2", index_kind=index.kind)
    with index.lock.reading():
        snap.save(path, header, index, key)
    with pytest.raises(ValueError, match="names a flat index"):
        snap.save(path, snap.SnapshotHeader("g", 3, 3200, "ab" * 32, D, "l2"), index, key)
    # The caller expects some kind; the snapshot says which it holds.
    expected = snap.SnapshotHeader("g", 3, 3200, "ab" * 32, D, "l2")
    loaded = snap.load(path, key, expected, lambda ix: bytes.fromhex("ab" * 32), POLICY)
    assert loaded.kind == "ivf_hnsw_sq8" and loaded.plan == index.plan and loaded.recall == index.recall
    probes = np.concatenate([data.mated, data.non_mated])
    np.testing.assert_array_equal(loaded.search(probes, 5).ids, index.search(probes, 5).ids)
    with pytest.raises(SnapshotRejected, match="differ from the store"):
        snap.load(path, key, expected, lambda ix: b"\x00" * 32)
    raw = bytearray(path.read_bytes())
    raw[len(snap.MAGIC)] = 1
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotRejected, match="version 1 is not supported"):
        snap.load(path, key, expected, lambda ix: bytes.fromhex("ab" * 32))


def test_serialised_flat_gallery_index_round_trips() -> None:
    data = clustered_templates(500, 10)
    index = GalleryIndex.empty(D, Metric.L2, POLICY)
    _add(index, data.ids, data.gallery)
    restored = GalleryIndex.from_bytes(index.to_bytes(), D, Metric.L2, POLICY)
    assert restored.kind == "flat" and restored.size == 500 and restored.recall == 1.0
    np.testing.assert_array_equal(restored.search(data.mated, 3).ids, index.search(data.mated, 3).ids)
    with pytest.raises(ValueError, match="not a serialised gallery index"):
        GalleryIndex.from_bytes(b"junk" * 4, D, Metric.L2)
    assert IndexPolicy().memory_budget_bytes == 16 * GiB


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def _matcher(folder: Path, key: bytes) -> tuple[Matcher, store.TemplateStore]:
    template_store = store.TemplateStore.open(folder / "db.sqlite3", store.TemplateSealer(key))
    matcher = Matcher(template_store, folder / "snapshots", key[::-1], index_policy=POLICY)
    matcher.load()
    return matcher, template_store


def _wait(matcher: Matcher, gallery_id: str) -> GalleryIndex:
    index = matcher._galleries[gallery_id].index
    assert isinstance(index, GalleryIndex)
    assert index.wait_for_rebuild(60)
    return index


def test_matcher_moves_a_growing_gallery_to_approximate_and_snapshots_it(folder: Path) -> None:
    key = os.urandom(32)
    matcher, template_store = _matcher(folder, key)
    matcher.create_gallery(GallerySpec("g", GalleryPurpose.WATCHLIST, "test-model", D, Metric.L2, 0.6))
    data = clustered_templates(3100, 20)
    references = [f"r{i}" for i in range(3100)]
    for start in range(0, 3100, 1000):
        outcomes = matcher.insert_many(
            "g", list(zip(references[start : start + 1000], data.gallery[start : start + 1000], strict=True))
        )
        assert outcomes == [None] * len(outcomes)
    index = _wait(matcher, "g")
    assert index.kind == "ivf_hnsw_sq8"
    info = matcher.describe("g")
    assert info.index_kind == "ivf_hnsw_sq8" and 0.9 <= info.index_recall <= 1.0
    results = matcher.identify("g", data.mated, top_k=1)
    assert [r.candidates[0].reference_id for r in results] == references[: len(data.mated)]
    assert matcher.save_snapshots() == 1
    matcher.close()
    template_store.close()

    # Restart: the approximate index comes back from its snapshot, searches unchanged.
    matcher, template_store = _matcher(folder, key)
    index = _wait(matcher, "g")
    assert index.kind == "ivf_hnsw_sq8" and index.builds == 0
    assert matcher.save_snapshots() == 0
    again = matcher.identify("g", data.mated, top_k=1)
    assert [r.candidates[0].reference_id for r in again] == references[: len(data.mated)]
    # Deletes below half of exact_below go back to exact search, and the snapshot follows.
    for reference in references[:1700]:
        matcher.delete("g", reference)
    assert _wait(matcher, "g").kind == "flat"
    assert matcher.save_snapshots() == 1
    matcher.close()
    template_store.close()
    matcher, template_store = _matcher(folder, key)
    assert _wait(matcher, "g").kind == "flat" and matcher.count("g") == 1400
    template_store.close()
