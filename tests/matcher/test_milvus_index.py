"""MilvusIndex on a real Milvus Lite (embedded, in tmp_path) against FlatIndex on the same data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from safepassage.matcher import BackendUnavailable, FlatIndex, InvalidGalleryId, Metric, SnapshotRejected
from safepassage.matcher.metric import normalise_rows
from safepassage.matcher.milvus_connection import MilvusConnection, MilvusSettings, MilvusTls, collection_name
from safepassage.matcher.milvus_index import MilvusIndex

DIMENSION = 32


def _data(n: int = 1500, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors, ids in random order, and probes: near-copies of stored vectors then strangers."""
    rng = np.random.default_rng(seed)
    vectors = normalise_rows(rng.normal(size=(n, DIMENSION)).astype(np.float32))
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64)
    near = vectors[:6] + 0.02 * rng.normal(size=vectors[:6].shape)
    probes = np.concatenate([near, rng.normal(size=(6, DIMENSION))]).astype(np.float32)
    return vectors, ids, probes


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[MilvusConnection]:
    with MilvusConnection(MilvusSettings(uri=str(tmp_path / "galleries.db"))) as connection:
        yield connection


def _both(lite: MilvusConnection, metric: Metric) -> tuple[MilvusIndex, FlatIndex, np.ndarray, np.ndarray]:
    vectors, ids, probes = _data()
    milvus, flat = lite.index("g-1", DIMENSION, metric), FlatIndex(DIMENSION, metric)
    milvus.add(ids, vectors)
    flat.add(ids, vectors)
    return milvus, flat, ids, probes


def _assert_same_hits(
    milvus: MilvusIndex, flat: FlatIndex, probes: np.ndarray, k: int, subset: np.ndarray | None = None
) -> None:
    got, want = milvus.search(probes, k, subset), flat.search(probes, k, subset)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


@pytest.mark.parametrize("metric", list(Metric))
def test_search_agrees_with_flat_index_in_its_units(lite: MilvusConnection, metric: Metric) -> None:
    milvus, flat, ids, probes = _both(lite, metric)
    assert milvus.kind == "milvus" and milvus.size == flat.size == len(ids)
    _assert_same_hits(milvus, flat, probes, 10)
    hits = milvus.search(probes, 10)
    np.testing.assert_array_equal(hits.ids[:6, 0], ids[:6])  # the near-copies come back first
    # Units: Euclidean distance (Milvus reports its square) or cosine similarity, closest first.
    if metric is Metric.L2:
        assert (hits.scores[:6, 0] < 0.2).all() and (np.diff(hits.scores, axis=1) >= 0).all()
    else:
        assert (hits.scores[:6, 0] > 0.97).all() and (np.diff(hits.scores, axis=1) <= 0).all()


@pytest.mark.parametrize("metric", list(Metric))
def test_removals_and_subsets_agree_with_flat_index(lite: MilvusConnection, metric: Metric) -> None:
    milvus, flat, ids, probes = _both(lite, metric)
    gone = np.concatenate([ids[:3], ids[100:400], [10**9, 10**9 + 1]])  # two were never held
    assert milvus.remove(gone) == flat.remove(gone) == 303
    assert milvus.size == flat.size == len(ids) - 303
    _assert_same_hits(milvus, flat, probes, 10)
    subset = np.concatenate([ids[::17], ids[:3]])  # 1:few, naming some removed templates
    _assert_same_hits(milvus, flat, probes, 5, subset)
    assert set(milvus.search(probes, 5, subset).ids.ravel()) <= set(subset) - set(gone)
    assert (milvus.search(probes, 5, ids[:0]).ids == -1).all()


def test_searches_see_each_write_at_once(lite: MilvusConnection) -> None:
    """Strong consistency: no flush between a write and the search that must see it."""
    vectors, ids, _ = _data(n=40)
    index = lite.index("g-1", DIMENSION, Metric.L2)
    index.add(ids[:30], vectors[:30])
    assert index.search(vectors[:1], 1).ids[0, 0] == ids[0]
    index.add(ids[30:], vectors[30:])
    assert index.search(vectors[35:36], 1).ids[0, 0] == ids[35] and index.size == 40
    index.remove(ids[35:36])
    assert index.search(vectors[35:36], 1).ids[0, 0] != ids[35] and index.size == 39


def test_empty_slots_when_fewer_than_k(lite: MilvusConnection) -> None:
    vectors, ids, probes = _data(n=3)
    index = lite.index("g-1", DIMENSION, Metric.COSINE)
    assert (index.search(probes, 2).ids == -1).all()
    index.add(ids, vectors)
    hits = index.search(probes, 5)
    assert (hits.ids[:, :3] >= 0).all() and (hits.ids[:, 3:] == -1).all()
    assert np.isneginf(hits.scores[:, 3:]).all()


def test_contents_round_trip_exactly_ordered_by_id(lite: MilvusConnection) -> None:
    milvus, flat, _, _ = _both(lite, Metric.L2)
    got_ids, got_vectors = milvus.contents()
    flat_ids, flat_vectors = flat.contents()
    order = np.argsort(flat_ids)
    np.testing.assert_array_equal(got_ids, flat_ids[order])
    assert got_vectors.dtype == np.float32 and got_vectors.tobytes() == flat_vectors[order].tobytes()
    batches = list(milvus.iter_contents(batch_size=256))
    assert len(batches) == 6 and all((np.diff(b[0]) > 0).all() for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), got_ids)


def test_reopened_file_holds_the_same_contents(tmp_path: Path) -> None:
    vectors, ids, probes = _data()
    settings = MilvusSettings(uri=str(tmp_path / "galleries.db"))
    with MilvusConnection(settings) as connection:
        index = connection.index("g-1", DIMENSION, Metric.COSINE)
        index.add(ids, vectors)
        index.remove(ids[:10])
        before, hits = index.contents(), index.search(probes, 5)
        index.close()
    # The last connection's close stopped the embedded server: this is a fresh one reading the files.
    with MilvusConnection(settings) as connection:
        index = connection.index("g-1", DIMENSION, Metric.COSINE)
        after = index.contents()
        np.testing.assert_array_equal(after[0], before[0])
        assert after[1].tobytes() == before[1].tobytes() and index.size == len(ids) - 10
        np.testing.assert_array_equal(index.search(probes, 5).ids, hits.ids)


def test_refill_replaces_everything(lite: MilvusConnection) -> None:
    vectors, ids, _ = _data(n=300)
    index = lite.index("g-1", DIMENSION, Metric.L2)
    index.add(ids[:100] + 1, vectors[:100])  # stale rows the store no longer has
    assert index.refill((ids[i : i + 128], vectors[i : i + 128]) for i in range(0, 300, 128)) == 300
    got_ids, got_vectors = index.contents()
    order = np.argsort(ids)
    np.testing.assert_array_equal(got_ids, ids[order])
    assert got_vectors.tobytes() == vectors[order].tobytes()


def test_galleries_get_distinct_collections(lite: MilvusConnection) -> None:
    assert collection_name("a-b") == "sp_a_db" and collection_name("a_b") == "sp_a__b"
    assert collection_name("a_db") == "sp_a__db"  # not "a-b"'s
    with pytest.raises(InvalidGalleryId):
        collection_name("Bad Id")
    vectors, ids, _ = _data(n=20)
    first, second = lite.index("a-b", DIMENSION, Metric.L2), lite.index("a_b", DIMENSION, Metric.L2)
    first.add(ids[:5], vectors[:5])
    assert first.size == 5 and second.size == 0
    assert lite.drop("a-b") and not lite.drop("a-b")
    assert lite.index("a-b", DIMENSION, Metric.L2).size == 0


def test_a_collection_that_does_not_fit_is_rejected(lite: MilvusConnection) -> None:
    lite.index("g-1", DIMENSION, Metric.L2)
    with pytest.raises(SnapshotRejected, match="dimension 32 for 16"):
        lite.index("g-1", 16, Metric.L2)
    lite.index("g-2", DIMENSION, Metric.COSINE)
    with pytest.raises(SnapshotRejected, match="metric COSINE"):
        lite.index("g-2", DIMENSION, Metric.L2)
    assert lite.drop("g-1")
    assert lite.index("g-1", 16, Metric.L2).size == 0


def test_a_changed_index_type_is_rebuilt(tmp_path: Path) -> None:
    vectors, ids, probes = _data()
    flat = FlatIndex(DIMENSION, Metric.L2)
    flat.add(ids, vectors)
    uri = str(tmp_path / "galleries.db")
    with MilvusConnection(MilvusSettings(uri=uri)) as connection:
        connection.index("g-1", DIMENSION, Metric.L2).add(ids, vectors)
    hnsw = MilvusSettings(
        uri=uri, index_type="HNSW", index_params={"M": 16, "efConstruction": 64}, search_params={"ef": 4}
    )
    # One inverted list scanned whole: exact, and FAISS-fast on Lite (its FLAT is a NumPy scan).
    ivf = MilvusSettings(
        uri=uri, index_type="IVF_FLAT", index_params={"nlist": 1}, search_params={"nprobe": 1}
    )
    for settings in (hnsw, ivf):
        with MilvusConnection(settings) as connection:
            index = connection.index("g-1", DIMENSION, Metric.L2)
            index.flush()  # Lite builds indexes on flushed segments only
            described = connection.call("describe", "describe_index", index.collection, "vector")
            assert described["index_type"] == settings.index_type and index.size == len(ids)
            assert described["params"] == settings.index_params  # Lite got the build parameters
            hits = index.search(probes, 10)  # for HNSW, ef 4 is raised to k
            np.testing.assert_array_equal(hits.ids[:6, 0], ids[:6])
    with MilvusConnection(ivf) as connection:
        _assert_same_hits(connection.index("g-1", DIMENSION, Metric.L2), flat, probes, 10)


def test_unreachable_milvus_raises_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"cannot connect to Milvus at http://127\.0\.0\.1:1"):
        MilvusConnection(MilvusSettings(uri="http://127.0.0.1:1", timeout_s=2))
    with pytest.raises(BackendUnavailable, match="does not exist"):
        MilvusConnection(MilvusSettings(uri=str(tmp_path / "missing" / "galleries.db")))
    with pytest.raises(ValueError, match=r"must end in \.db"):
        MilvusSettings(uri="bogus://host")


def test_a_server_lost_mid_use_raises_backend_unavailable(lite: MilvusConnection) -> None:
    from milvus_lite.server_manager import server_manager_instance

    index = lite.index("g-1", DIMENSION, Metric.L2)
    server_manager_instance.release_server(os.path.abspath(lite.settings.uri))
    with pytest.raises(BackendUnavailable, match=r"search \(gallery g-1\) failed"):
        index.search(np.zeros((1, DIMENSION), np.float32), 3)


def test_a_lite_folder_in_use_by_another_process_is_unavailable(lite: MilvusConnection) -> None:
    code = (
        "from safepassage.matcher.milvus_connection import MilvusConnection, MilvusSettings\n"
        "from safepassage.matcher import BackendUnavailable\n"
        f"try: MilvusConnection(MilvusSettings(uri={lite.settings.uri!r}))\n"
        "except BackendUnavailable as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "another process" in out


def test_credentials_stay_out_of_logs_and_reprs() -> None:
    settings = MilvusSettings(uri="https://admin:secret@milvus.example:19530", token="root:Milvus")
    assert settings.display_uri == "https://***@milvus.example:19530"
    assert "secret" not in repr(settings) and "root:Milvus" not in repr(settings)
    with pytest.raises(ValueError, match="mutual TLS"):
        MilvusTls(ca_pem_path="ca.pem")
    assert MilvusTls(server_pem_path="s.pem").options() == {"secure": True, "server_pem_path": "s.pem"}
