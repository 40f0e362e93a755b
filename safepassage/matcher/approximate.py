"""An approximate index for large galleries: IVF over an HNSW coarse quantizer, re-ranked exactly.

The IVF part (FAISS `IndexIVFScalarQuantizer` / `IndexIVFPQ` / `IndexIVFFlat`
whose coarse quantizer is an `IndexHNSWFlat`) only proposes candidates: each
search asks it for `max(rerank, k)` of them, and their exact scores are then
computed from the float32 vectors held alongside in a `FlatIndex`. Every
score a caller sees (and so every match decision) is therefore exact; what
the approximation can cost is recall, a true neighbour that was never
proposed, which `recall_at_k` measures against exact search.

Restricted (1:few) searches never use the IVF part: the subset is searched
exactly in the `FlatIndex`, which is faster than an IVF scan filtered to a
few ids and cannot miss.

The coarse centroids and the code books are trained on a seeded sample of
the gallery's own vectors, so the index is rebuilt when the gallery has
grown enough to make that sample stale (safepassage.matcher.index_policy).

Thread-safety is that of `FlatIndex`: callers serialise mutations, searches
may run concurrently. Search-time settings (nprobe, efSearch) travel with
each call in FAISS `SearchParametersIVF`, so no search changes shared state.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import asdict, dataclass
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from safepassage.matcher.index import FlatIndex
from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.search import Hits
from safepassage.matcher.vector_bounds import FAISS_SAFE

log = logging.getLogger(__name__)
# The parts of faiss's SWIG module that its type stubs leave out.
_swig: Any = faiss

Codes = Literal["sq8", "pq", "flat"]
CODES: tuple[Codes, ...] = ("sq8", "pq", "flat")

_MAGIC = b"SPAPX"
_FORMAT = 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# Queries re-ranked per block: bounds the gathered candidate vectors to
# 1024 x rerank x d floats (32 MiB at rerank 64, d 128).
_RERANK_BLOCK = 1024
# Vectors added to the IVF per call: its add computes assignments and codes
# for the whole call at once.
_ADD_BLOCK = 1 << 20
# Above this many lists, k-means assigns training points with an HNSW graph
# over the centroids instead of comparing each point with every centroid.
_HNSW_TRAINING_ABOVE = 2048


@dataclass(frozen=True)
class ApproximateParams:
    """How an ApproximateIndex is built (nlist, codes, hnsw_m, pq_m, train_size) and searched."""

    nlist: int
    codes: Codes = "sq8"
    hnsw_m: int = 32
    pq_m: int = 32
    nprobe: int = 32
    quantizer_ef_search: int = 64
    rerank: int = 64
    train_size: int = 100_000

    def __post_init__(self) -> None:
        if self.codes not in CODES:
            raise ValueError(f"codes must be one of {', '.join(CODES)}, not {self.codes!r}")
        for name in ("nlist", "hnsw_m", "pq_m", "nprobe", "quantizer_ef_search", "rerank", "train_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def kind(self) -> str:
        return f"ivf_hnsw_{self.codes}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ApproximateParams:
        return cls(**values)


def recall_at_k(approx: Hits, exact: Hits, k: int) -> float:
    """Fraction of the exact top-k ids that the approximate top-k also holds (k=1: the top id agrees).

    Averaged over queries; a query whose exact result is empty counts as found.
    """
    if len(exact.ids) == 0:
        return 1.0
    found = 0.0
    for got, want in zip(approx.ids[:, :k], exact.ids[:, :k], strict=True):
        wanted = set(want[want >= 0].tolist())
        found += len(wanted.intersection(got.tolist())) / len(wanted) if wanted else 1.0
    return found / len(exact.ids)


def exact_top_k(
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    probes: npt.NDArray[np.float32],
    k: int,
    metric: Metric,
) -> Hits:
    """Exact k nearest neighbours by blocked matrix products: the ground truth of recall.

    Unlike `exact_search` it never holds a full (vectors x probes) table, so
    it runs over millions of vectors. Candidates come from the expanded form
    (|v|^2 - 2 v.p for L2), which rounds, so a few extra are kept and all are
    re-scored from differences, the way `ApproximateIndex` scores.
    """
    q, n = len(probes), len(ids)
    scores = np.full((q, k), metric.worst_score(), dtype=np.float32)
    found = np.full((q, k), -1, dtype=np.int64)
    if n == 0 or q == 0:
        return Hits(scores, found)
    prepared = normalise_rows(probes) if metric is Metric.COSINE else np.asarray(probes, np.float32)
    depth = min(k + 8, n)
    block = max(4096, (1 << 24) // q)
    best_keys = np.zeros((q, 0), dtype=np.float32)
    best_rows = np.zeros((q, 0), dtype=np.int64)
    for start in range(0, n, block):
        chunk = np.asarray(vectors[start : start + block], dtype=np.float32)
        products = prepared @ chunk.T
        if metric is Metric.L2:
            keys = np.einsum("ij,ij->i", chunk, chunk)[None, :] - 2.0 * products
        else:
            keys = -products
        take = min(depth, len(chunk))
        part = np.argpartition(keys, take - 1, axis=1)[:, :take]
        keys = np.concatenate([best_keys, np.take_along_axis(keys, part, axis=1)], axis=1)
        rows = np.concatenate([best_rows, part + start], axis=1)
        keep = np.argpartition(keys, depth - 1, axis=1)[:, :depth]
        best_keys = np.take_along_axis(keys, keep, axis=1)
        best_rows = np.take_along_axis(rows, keep, axis=1)
    stored = np.asarray(vectors, dtype=np.float32)[best_rows]  # (q, depth, d)
    if metric is Metric.L2:
        difference = stored - prepared[:, None, :]
        exact = np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
        order = np.argsort(exact, axis=1, kind="stable")
    else:
        exact = np.einsum("ijk,ik->ij", stored, prepared)
        order = np.argsort(-exact, axis=1, kind="stable")
    take = min(k, depth)
    scores[:, :take] = np.take_along_axis(exact, order[:, :take], axis=1)
    found[:, :take] = np.asarray(ids, dtype=np.int64)[np.take_along_axis(best_rows, order[:, :take], axis=1)]
    return Hits(scores, found)


class ApproximateIndex:
    """IVF-HNSW candidates, exact re-ranking; implements `VectorIndex`."""

    def __init__(self, dimension: int, metric: Metric, params: ApproximateParams, ivf: Any, exact: FlatIndex):
        self.dimension = dimension
        self.metric = metric
        self.params = params
        self._ivf: Any = ivf
        self._exact = exact

    @classmethod
    def train(
        cls,
        dimension: int,
        metric: Metric,
        params: ApproximateParams,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        seed: int = 0,
    ) -> ApproximateIndex:
        """Train on a seeded sample of `vectors` (the gallery's own), then add them all."""
        if len(ids) != len(vectors) or vectors.ndim != 2 or vectors.shape[1] != dimension:
            raise ValueError(f"expected {len(ids)} vectors of dimension {dimension}, got {vectors.shape}")
        if len(vectors) < params.nlist:
            raise ValueError(f"{len(vectors)} vectors cannot train {params.nlist} lists")
        if params.codes == "pq" and dimension % params.pq_m:
            raise ValueError(f"pq_m {params.pq_m} does not divide the dimension {dimension}")
        # FAISS aborts the process (not an exception) when its float32 arithmetic overflows.
        unsafe = int(FAISS_SAFE.outside(vectors).sum())
        if unsafe:
            raise ValueError(f"{unsafe} vectors are not finite or beyond what FAISS can train on")
        rng = np.random.default_rng(seed)
        count = min(params.train_size, len(vectors))
        sample = np.sort(rng.choice(len(vectors), size=count, replace=False))
        training = np.ascontiguousarray(vectors[sample], dtype=np.float32)
        ivf = _empty_ivf(dimension, metric, params)
        # Plain k-means assigns every point to every centroid on each of its
        # iterations; with many lists an HNSW graph over the centroids does the
        # assignment at a small cost in centroid quality (as faiss's bench_ivf).
        faiss_metric = _faiss_metric(metric)
        clustering: Any = (
            faiss.IndexHNSWFlat(dimension, 32, faiss_metric)
            if params.nlist > _HNSW_TRAINING_ABOVE
            else faiss.IndexFlat(dimension, faiss_metric)
        )
        ivf.clustering_index = clustering
        ivf.cp.seed = seed
        ivf.train(training)
        ivf.clustering_index = None
        del training
        ivf.set_direct_map_type(_swig.DirectMap.Hashtable)
        index = cls(dimension, metric, params, ivf, FlatIndex(dimension, metric))
        for start in range(0, len(vectors), _ADD_BLOCK):
            index.add(ids[start : start + _ADD_BLOCK], vectors[start : start + _ADD_BLOCK])
        log.info("trained %s on %d of %d vectors (nlist %d)", params.kind, count, len(vectors), params.nlist)
        return index

    @property
    def kind(self) -> str:
        return self.params.kind

    @property
    def size(self) -> int:
        return self._exact.size

    def _prepare_probes(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.metric is Metric.COSINE:
            return normalise_rows(vectors)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.ascontiguousarray(ids, dtype=np.int64)
        self._ivf.add_with_ids(rows, keys)
        self._exact.add(keys, rows)

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        keys = np.ascontiguousarray(ids, dtype=np.int64)
        # The hash-table direct map removes by id in O(1) each, but only from an IDSelectorArray.
        self._ivf.remove_ids(faiss.IDSelectorArray(keys))
        return self._exact.remove(keys)

    def search(
        self,
        probes: npt.NDArray[np.float32],
        k: int,
        subset: npt.NDArray[np.int64] | None = None,
    ) -> Hits:
        if subset is not None:
            return self._exact.search(probes, k, subset)
        q = probes.shape[0]
        if self.size == 0:
            return Hits(
                np.full((q, k), self.metric.worst_score(), dtype=np.float32),
                np.full((q, k), -1, dtype=np.int64),
            )
        prepared = self._prepare_probes(probes)
        settings = faiss.SearchParametersIVF(  # type: ignore[call-arg]
            nprobe=self.params.nprobe,
            quantizer_params=_swig.SearchParametersHNSW(efSearch=self.params.quantizer_ef_search),
        )
        _, candidates = self._ivf.search(prepared, max(self.params.rerank, k), params=settings)
        return self._rerank(prepared, candidates.astype(np.int64), k)

    def _rerank(self, probes: npt.NDArray[np.float32], candidates: npt.NDArray[np.int64], k: int) -> Hits:
        """Exact scores of the candidates, closest first; only these reach the caller."""
        q, depth = candidates.shape
        worst = self.metric.worst_score()
        scores = np.full((q, k), worst, dtype=np.float32)
        found = np.full((q, k), -1, dtype=np.int64)
        take = min(k, depth)
        for start in range(0, q, _RERANK_BLOCK):
            block = candidates[start : start + _RERANK_BLOCK]
            rows, columns = np.nonzero(block >= 0)
            stored = self._exact.vectors_of(block[rows, columns])
            queries = probes[start + rows]
            if self.metric is Metric.L2:
                difference = stored - queries
                values = np.sqrt(np.einsum("ij,ij->i", difference, difference))
            else:
                values = np.einsum("ij,ij->i", stored, queries)
            exact = np.full(block.shape, worst, dtype=np.float32)
            exact[rows, columns] = values
            order = np.argsort(-exact if self.metric.higher_is_closer else exact, axis=1, kind="stable")
            order = order[:, :take]
            stop = start + len(block)
            scores[start:stop, :take] = np.take_along_axis(exact, order, axis=1)
            found[start:stop, :take] = np.take_along_axis(block, order, axis=1)
        return Hits(scores, found)

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._exact.contents()

    def vectors_of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return self._exact.vectors_of(ids)

    def memory_bytes(self) -> int:
        """Estimated resident size: the exact store plus codes, ids, id map, centroids and graph."""
        n, d = self.size, self.dimension
        codes = n * (int(self._ivf.code_size) + 8 + 32)
        centroids = self.params.nlist * (4 * d + 4 * 2 * self.params.hnsw_m + 64)
        tables = 0
        if self.params.codes == "pq":
            tables = 4 * int(_swig.downcast_index(self._ivf).precomputed_table.size())
        return self._exact.memory_bytes() + codes + centroids + tables

    def to_bytes(self) -> bytes:
        """Both parts, length-prefixed, after a JSON header naming the parameters."""
        header = json.dumps(
            {"params": self.params.to_dict(), "dimension": self.dimension, "metric": self.metric.value},
            sort_keys=True,
        ).encode()
        ivf = bytes(faiss.serialize_index(self._ivf))
        exact = self._exact.to_bytes()
        return b"".join(
            [_MAGIC, bytes([_FORMAT]), _U32.pack(len(header)), header, _U64.pack(len(ivf)), ivf, exact]
        )

    @classmethod
    def from_bytes(cls, data: bytes, dimension: int, metric: Metric) -> ApproximateIndex:
        """The index `to_bytes` wrote; ValueError when it is not one of this dimension and metric."""
        if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 5:
            raise ValueError("not a serialised approximate index")
        if data[len(_MAGIC)] != _FORMAT:
            raise ValueError(f"approximate index format {data[len(_MAGIC)]} is not supported")
        offset = len(_MAGIC) + 1
        (header_length,) = _U32.unpack_from(data, offset)
        offset += _U32.size
        header = json.loads(data[offset : offset + header_length])
        offset += header_length
        if header["dimension"] != dimension or header["metric"] != metric.value:
            raise ValueError(
                f"approximate index is of dimension {header['dimension']} and metric {header['metric']}"
            )
        params = ApproximateParams.from_dict(header["params"])
        (ivf_length,) = _U64.unpack_from(data, offset)
        offset += _U64.size
        if offset + ivf_length > len(data):
            raise ValueError("approximate index is truncated")
        ivf = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, count=ivf_length, offset=offset))
        offset += ivf_length
        if not isinstance(ivf, faiss.IndexIVF) or ivf.d != dimension:
            raise ValueError(f"approximate index holds a {type(ivf).__name__} of dimension {ivf.d}")
        if ivf.direct_map.type != _swig.DirectMap.Hashtable:
            raise ValueError("approximate index lacks its id map")
        exact = FlatIndex.from_bytes(data[offset:], dimension, metric)
        if int(ivf.ntotal) != exact.size:
            raise ValueError(f"approximate index parts disagree: {ivf.ntotal} codes, {exact.size} vectors")
        return cls(dimension, metric, params, ivf, exact)


def _faiss_metric(metric: Metric) -> int:
    return int(faiss.METRIC_INNER_PRODUCT if metric is Metric.COSINE else faiss.METRIC_L2)


def _empty_ivf(dimension: int, metric: Metric, params: ApproximateParams) -> Any:
    faiss_metric = _faiss_metric(metric)
    quantizer: Any = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss_metric)
    if params.codes == "sq8":
        ivf: Any = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, params.nlist, faiss.ScalarQuantizer.QT_8bit, faiss_metric
        )
    elif params.codes == "pq":
        ivf = faiss.IndexIVFPQ(quantizer, dimension, params.nlist, params.pq_m, 8, faiss_metric)
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dimension, params.nlist, faiss_metric)
    # The IVF frees its quantizer with itself (as a deserialised one does).
    ivf.own_fields = True
    quantizer.this.disown()
    return ivf
