"""Which index a gallery gets: exact search while it is small, IVF-HNSW with exact re-ranking when large.

A flat index is exact and, below a few hundred thousand templates, fast
enough (one scan of 250k x 128 float32 is 128 MB, about 10 ms). Above
`exact_below` a gallery gets an `ApproximateIndex` trained on its own
vectors, retrained when it has grown by `rebuild_growth`, and back to flat
only below half of `exact_below` (hysteresis, so a gallery hovering around
the boundary is not rebuilt on every insert and delete).

The search settings scale with the number of lists: about 2 sqrt(N) lists
(a power of two), sqrt(8 x lists) of them probed (a power of two, at least
32: 64 of 512, 128 of 2048, 256 of 8192), an HNSW efSearch of twice
nprobe. Measured on clustered synthetic 128-d templates whose genuine
and impostor L2 distances resemble dlib's on LFW (means 0.45 and 0.82), 500
mated and 500 non-mated probes, sq8 codes, rerank 64, one thread, recall@1
against exact search and the time of one query beside an exact flat scan:

    gallery  nlist  nprobe  efSearch  mated  non-mated  ms (exact ms)
    50k      512    32      64        1.000  0.996      0.22 (0.79)
    200k     1024   64      128       1.000  1.000      0.62 (5.6)
    200k*    1024   64      128       1.000  0.998      0.55 (5.1)
    200k c   1024   64      128       1.000  1.000      0.68 (4.9)
    800k     2048   128     256       1.000  1.000      1.6 (24.8)
    800k*    2048   128     256       0.998  0.998      1.6 (19.4)
    (* a flatter spectrum, harder; c cosine)

Probing 1/32 of the lists was not enough up to a million templates:
non-mated recall@1 0.985 to 0.994 at 50k to 800k; at 10M, where lists hold
about 1,200 templates each, 1/32 (256 of 8192) reached 0.997 at 29x the
exact scan (benchmarks/results/scale.json), and 1/16 only added cost.
Fewer, larger lists did better than the usual 4 sqrt(N) at
the same number of scanned codes (200k: 1024 lists x 32 probes 1.000, 2048 x
64 0.996), and the HNSW quantizer needs efSearch of at least twice nprobe: at
efSearch = nprobe it missed 5 to 7% of the lists to probe. Real embeddings
differ from the synthetic set: every build measures its own recall
(GalleryIndex.recall), which DescribeGallery reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from safepassage.matcher.approximate import ApproximateIndex, ApproximateParams, Codes
from safepassage.matcher.errors import IndexOverBudget
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.metric import Metric

GiB = 1 << 30
# Below this many templates an approximate index is never worth training.
MIN_APPROXIMATE = 1000
# k-means wants at least about 39 training points per list (faiss warns below).
_POINTS_PER_LIST = 39
# Estimated allocator and container overhead on top of the raw arrays.
_OVERHEAD = 1.2

IndexKind = Literal["flat", "approximate"]


@dataclass(frozen=True)
class IndexPlan:
    """The index a gallery should have: its kind, how to build it, and the size it was planned for."""

    kind: IndexKind = "flat"
    params: ApproximateParams | None = None
    trained_for: int = 0

    def __post_init__(self) -> None:
        if (self.kind == "approximate") != (self.params is not None):
            raise ValueError("an approximate plan needs parameters and a flat plan has none")

    @property
    def index_kind(self) -> str:
        """The built index's `kind`: "flat" or e.g. "ivf_hnsw_sq8"."""
        return "flat" if self.params is None else self.params.kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": None if self.params is None else self.params.to_dict(),
            "trained_for": self.trained_for,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexPlan:
        params = values.get("params")
        return cls(
            kind=values["kind"],
            params=None if params is None else ApproximateParams.from_dict(params),
            trained_for=int(values.get("trained_for", 0)),
        )


FLAT = IndexPlan()


@dataclass(frozen=True)
class IndexPolicy:
    exact_below: int = 250_000
    memory_budget_bytes: int = 16 * GiB
    rebuild_growth: float = 2.0
    codes: Codes = "sq8"
    # nlist is list_factor * sqrt(size), rounded to a power of two within [min_nlist, max_nlist].
    list_factor: float = 2.0
    min_nlist: int = 256
    max_nlist: int = 65_536
    # nprobe is sqrt(probe_scale * nlist) rounded up to a power of two, at least min_nprobe,
    # unless `nprobe` fixes it. Lists fill as a gallery grows, so a shrinking fraction of them
    # keeps recall: on the synthetic set (benchmarks/results/scale.json) recall@1 >= 0.99 came
    # at 64 of 512 lists (100k), 128 of 2048 (1M) and 256 of 8192 (10M): sqrt(8 * nlist).
    probe_scale: float = 8.0
    min_nprobe: int = 32
    nprobe: int | None = None
    # efSearch of the HNSW quantizer: by default twice nprobe, at least 64.
    quantizer_ef_search: int | None = None
    rerank: int = 64
    hnsw_m: int = 32
    pq_m: int = 32
    # Training sample: train_per_list points per list, at least min_train_size (or the whole gallery).
    train_per_list: int = 40
    min_train_size: int = 50_000
    # FAISS threads of a background build; 0 leaves OpenMP's default (every core).
    build_threads: int = field(default=0)

    def __post_init__(self) -> None:
        if self.exact_below < 0 or self.memory_budget_bytes <= 0 or self.rebuild_growth <= 1.0:
            raise ValueError("exact_below >= 0, memory_budget_bytes > 0 and rebuild_growth > 1 are required")
        if not self.probe_scale > 0 or self.min_nlist < 1 or self.max_nlist < self.min_nlist:
            raise ValueError("probe_scale must be positive and 1 <= min_nlist <= max_nlist")

    def approximate_params(self, size: int) -> ApproximateParams:
        """The IVF parameters for a gallery of `size` templates."""
        wanted = 2 ** round(math.log2(max(1.0, self.list_factor * math.sqrt(size))))
        nlist = min(max(wanted, self.min_nlist), self.max_nlist)
        # Never more lists than the gallery can train.
        nlist = max(1, min(nlist, 2 ** int(math.log2(max(1, size // _POINTS_PER_LIST)))))
        wanted_probes = 2 ** math.ceil(math.log2(math.sqrt(self.probe_scale * nlist)))
        nprobe = self.nprobe or max(self.min_nprobe, wanted_probes)
        nprobe = min(nprobe, nlist)
        ef = self.quantizer_ef_search or max(64, 2 * nprobe)
        return ApproximateParams(
            nlist=nlist,
            codes=self.codes,
            hnsw_m=self.hnsw_m,
            pq_m=self.pq_m,
            nprobe=nprobe,
            quantizer_ef_search=ef,
            rerank=self.rerank,
            train_size=min(size, max(self.min_train_size, self.train_per_list * nlist)),
        )

    def plan(self, size: int, dimension: int, current: IndexPlan | None = None) -> IndexPlan:
        """The index for `size` templates; IndexOverBudget when it cannot fit the memory budget.

        `current` is the gallery's present plan: an approximate gallery stays
        approximate down to half of `exact_below`.
        """
        floor = self.exact_below
        if current is not None and current.kind == "approximate":
            floor = self.exact_below // 2
        if size >= max(floor, MIN_APPROXIMATE):
            plan = IndexPlan("approximate", self.approximate_params(size), size)
        else:
            plan = IndexPlan("flat", None, size)
        needed = estimate_bytes(plan, size, dimension)
        if needed > self.memory_budget_bytes:
            raise IndexOverBudget(
                f"an index of {size} templates of dimension {dimension} needs about"
                f" {needed / GiB:.1f} GiB, over this server's budget of"
                f" {self.memory_budget_bytes / GiB:.1f} GiB per gallery; use the milvus backend"
                " (matching.backend) for galleries of this size, or raise matching.index.memory_budget_gib"
            )
        return plan

    def wants_rebuild(self, current: IndexPlan, size: int) -> bool:
        """Whether a gallery built to `current` should be rebuilt now that it holds `size` templates."""
        if current.kind == "flat":
            return size >= max(self.exact_below, MIN_APPROXIMATE)
        if size < max(self.exact_below // 2, MIN_APPROXIMATE):
            return True
        grown = size >= current.trained_for * self.rebuild_growth
        shrunk = size * self.rebuild_growth**2 <= current.trained_for
        return grown or shrunk


def estimate_bytes(plan: IndexPlan, size: int, dimension: int) -> int:
    """Memory of the index `plan` describes at `size` templates (float32 vectors, ids, codes, centroids)."""
    per_vector = 4 * dimension + 8
    fixed = 0
    if plan.params is not None:
        code = {"sq8": dimension, "pq": plan.params.pq_m, "flat": 4 * dimension}[plan.params.codes]
        per_vector += code + 8
        fixed = plan.params.nlist * 4 * dimension
    return int((size * per_vector + fixed) * _OVERHEAD)


def build(
    plan: IndexPlan,
    dimension: int,
    metric: Metric,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    seed: int = 0,
) -> FlatIndex | ApproximateIndex:
    """The index `plan` describes, holding (ids, vectors)."""
    if plan.params is None:
        index = FlatIndex(dimension, metric)
        if len(ids):
            index.add(ids, vectors)
        return index
    return ApproximateIndex.train(dimension, metric, plan.params, ids, vectors, seed=seed)
