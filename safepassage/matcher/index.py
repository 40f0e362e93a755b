"""Vector indexes behind one small interface, and the exact FAISS index.

An index holds (template id, vector) pairs of one gallery and answers k-NN
queries, optionally restricted to a subset of ids (1:few). Later index types
(IVF, HNSW, quantised stores) plug in behind `VectorIndex`; each must be
checked against `safepassage.matcher.search.exact_search`.

Indexes are not thread-safe for mutation; `Matcher` serialises access.
"""

from __future__ import annotations

from typing import Any, Protocol

import faiss
import numpy as np
import numpy.typing as npt

from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.search import Hits


def set_search_threads(count: int) -> None:
    """FAISS (OpenMP) threads for searches made from the calling thread.

    OpenMP settings are per thread: each server worker calls this at start.
    On small machines one thread per search is fastest: parallelism comes from
    concurrent requests, and oversubscribed OpenMP threads slow down sharply
    (faiss issue #2953; benchmarks/README.md).
    """
    faiss.omp_set_num_threads(count)


def set_blas_threshold(queries_times_dimension: int) -> None:
    """Search batches with BLAS matrix products from this many queries x dimension on.

    faiss compares the threshold with nq * d, not nq (faiss PR #5022); its
    default, 128000, means 1000 queries at d = 128, so micro-batches would be
    scanned one probe at a time. A lone probe is about 5.7x slower through
    BLAS, and BLAS pays from about 8 probes: pass 8 * dimension
    (safepassage/matcher/batcher.py has the measurements). Process-wide.
    """
    faiss.cvar.distance_compute_blas_threshold = queries_times_dimension


class VectorIndex(Protocol):
    metric: Metric
    dimension: int

    @property
    def size(self) -> int: ...

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None: ...

    def remove(self, ids: npt.NDArray[np.int64]) -> int: ...

    def search(
        self,
        probes: npt.NDArray[np.float32],
        k: int,
        subset: npt.NDArray[np.int64] | None = None,
    ) -> Hits: ...

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """All (ids, vectors) in the index, for verification and snapshots."""
        ...


class SnapshotIndex(VectorIndex, Protocol):
    """An index kept in this process, written into encrypted snapshots (Milvus keeps its own)."""

    def to_bytes(self) -> bytes: ...


class FlatIndex:
    """Exact search with FAISS (IndexFlatL2 or IndexFlatIP over unit vectors).

    Vectors are stored exactly as given, so `contents()` returns the caller's
    bytes (the store's digest depends on that). Cosine indexes therefore expect
    unit vectors from the caller (`Matcher` normalises templates once, before
    they reach the store); probes are normalised here.
    """

    kind = "flat"

    def __init__(self, dimension: int, metric: Metric, _index: Any = None) -> None:
        self.dimension = dimension
        self.metric = metric
        if _index is None:
            flat = faiss.IndexFlatIP(dimension) if metric is Metric.COSINE else faiss.IndexFlatL2(dimension)
            _index = faiss.IndexIDMap2(flat)
        self._index: Any = _index

    @classmethod
    def from_bytes(cls, data: bytes, dimension: int, metric: Metric) -> FlatIndex:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.d != dimension or not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"snapshot holds a {type(index).__name__} of dimension {index.d}")
        return cls(dimension, metric, index)

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def _prepare_probes(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.metric is Metric.COSINE:
            return normalise_rows(vectors)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index.add_with_ids(rows, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self._index.remove_ids(selector))

    def search(
        self,
        probes: npt.NDArray[np.float32],
        k: int,
        subset: npt.NDArray[np.int64] | None = None,
    ) -> Hits:
        q = probes.shape[0]
        if self.size == 0 or (subset is not None and len(subset) == 0):
            return Hits(
                np.full((q, k), self.metric.worst_score(), dtype=np.float32),
                np.full((q, k), -1, dtype=np.int64),
            )
        params: Any = None
        if subset is not None:
            params = faiss.SearchParameters(  # type: ignore[call-arg]
                sel=faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
            )
        raw, ids = self._index.search(self._prepare_probes(probes), k, params=params)
        # IndexFlatL2 reports squared distances.
        scores = np.sqrt(np.maximum(raw, 0.0)) if self.metric is Metric.L2 else raw
        scores = np.where(ids < 0, self.metric.worst_score(), scores).astype(np.float32)
        return Hits(scores, ids.astype(np.int64))

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        n = self.size
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, n) if n else np.zeros((0, self.dimension), np.float32)
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The stored vectors of `ids` (n, d), in that order; every id must be present."""
        keys = np.ascontiguousarray(ids, dtype=np.int64)
        if len(keys) == 0:
            return np.zeros((0, self.dimension), np.float32)
        return np.ascontiguousarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def memory_bytes(self) -> int:
        """Estimated resident size: the float32 vectors, the id array and the id -> row hash map.

        The hash map (IndexIDMap2's rev_map, a std::unordered_map) costs about
        32 bytes per entry with its bucket array.
        """
        return self.size * (4 * self.dimension + 8 + 32)

    def to_bytes(self) -> bytes:
        return bytes(faiss.serialize_index(self._index))
