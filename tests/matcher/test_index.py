"""FlatIndex against the brute-force reference, and encrypted snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from safepassage.matcher import FlatIndex, Metric, SnapshotRejected, exact_search
from safepassage.matcher import snapshot as snap
from safepassage.matcher.errors import InvalidVector
from safepassage.matcher.metric import normalise_rows
from safepassage.matcher.vectors import as_matrix


def _data(n: int = 2000, d: int = 128, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (cosine indexes hold what they are given), ids in random order, probes."""
    rng = np.random.default_rng(seed)
    vectors = normalise_rows(rng.normal(size=(n, d)).astype(np.float32))
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64)
    probes = np.concatenate([vectors[:5] + 0.01, rng.normal(size=(5, d)).astype(np.float32)])
    return vectors, ids, probes


@pytest.mark.parametrize("metric", list(Metric))
def test_flat_index_agrees_with_exact_search(metric: Metric) -> None:
    vectors, ids, probes = _data()
    index = FlatIndex(128, metric)
    index.add(ids, vectors)
    got, want = index.search(probes, 10), exact_search(vectors, ids, probes, 10, metric)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    # The near-copies of stored vectors come back first.
    np.testing.assert_array_equal(got.ids[:5, 0], ids[:5])


@pytest.mark.parametrize("metric", list(Metric))
def test_restricted_search_and_removal_agree_with_exact_search(metric: Metric) -> None:
    vectors, ids, probes = _data()
    index = FlatIndex(128, metric)
    index.add(ids, vectors)
    subset = ids[::13]
    got = index.search(probes, 7, subset)
    want = exact_search(vectors[::13], subset, probes, 7, metric)
    np.testing.assert_array_equal(got.ids, want.ids)
    assert set(got.ids.ravel()) <= set(subset)
    assert index.remove(ids[:1000]) == 1000
    got = index.search(probes, 10)
    np.testing.assert_array_equal(got.ids, exact_search(vectors[1000:], ids[1000:], probes, 10, metric).ids)


def test_empty_slots_when_fewer_than_k() -> None:
    vectors, ids, probes = _data(n=3)
    index = FlatIndex(128, Metric.L2)
    index.add(ids, vectors)
    hits = index.search(probes, 5)
    assert (hits.ids[:, 3:] == -1).all() and np.isinf(hits.scores[:, 3:]).all()
    assert (FlatIndex(128, Metric.L2).search(probes, 2).ids == -1).all()
    assert (index.search(probes, 2, np.array([], np.int64)).ids == -1).all()


def test_vector_validation() -> None:
    with pytest.raises(InvalidVector, match="has 3 values; this gallery's model produces 128"):
        as_matrix([1.0, 2.0, 3.0], 128)
    with pytest.raises(InvalidVector, match="NaN or infinite value at position 4"):
        as_matrix([0.0] * 4 + [float("nan")] + [0.0] * 123, 128)
    with pytest.raises(InvalidVector, match="no vectors"):
        as_matrix(np.zeros((0, 128)), 128)


def _header(index: FlatIndex, digest: bytes = b"\x01" * 32) -> snap.SnapshotHeader:
    return snap.SnapshotHeader(
        "g1", generation=4, size=index.size, digest=digest.hex(), dimension=128, metric="l2"
    )


def test_snapshot_round_trip_and_rejections(tmp_path: Path) -> None:
    vectors, ids, probes = _data(n=500)
    index = FlatIndex(128, Metric.L2)
    index.add(ids, vectors)
    key = os.urandom(32)
    path = tmp_path / "g1.snapshot"
    header = _header(index)
    snap.save(path, header, index, key)
    # Templates never appear in the clear in the snapshot file.
    raw = path.read_bytes()
    assert vectors[0].tobytes()[:32] not in raw

    loaded = snap.load(path, key, header, lambda ix: b"\x01" * 32)
    np.testing.assert_array_equal(loaded.search(probes, 5).ids, index.search(probes, 5).ids)

    with pytest.raises(SnapshotRejected, match="generation"):
        snap.load(path, key, _header(index).__class__(**{**header.__dict__, "generation": 5}), lambda ix: b"")
    with pytest.raises(SnapshotRejected, match="differ from the store"):
        snap.load(path, key, header, lambda ix: b"\x02" * 32)
    with pytest.raises(SnapshotRejected, match="authentication"):
        snap.load(path, os.urandom(32), header, lambda ix: b"\x01" * 32)
    corrupted = bytearray(raw)
    corrupted[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(corrupted))
    with pytest.raises(SnapshotRejected, match="authentication"):
        snap.load(path, key, header, lambda ix: b"\x01" * 32)
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(SnapshotRejected):
        snap.load(path, key, header, lambda ix: b"\x01" * 32)
    path.write_bytes(b"garbage")
    with pytest.raises(SnapshotRejected, match="not a SafePassage"):
        snap.load(path, key, header, lambda ix: b"\x01" * 32)
