"""The scale benchmark's estimates: time and resident memory of each stage at a size, before measuring it.

The rates start from defaults for a 2-vCPU machine and are replaced by the run's own as it
measures sizes of 100k or more.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks.machine_profile import GIB
from benchmarks.scale_configs import (
    APPROXIMATE_CODES,
    Options,
    default_params,
    ordered,
    policy_params,
    search_variants,
    with_values,
)
from benchmarks.synthetic_templates import DIMENSION
from safepassage.matcher.approximate import ApproximateParams
from safepassage.matcher.errors import IndexOverBudget

if TYPE_CHECKING:
    from benchmarks.scale_report import SizeResult

HNSW_TRAINING_ABOVE = 2048  # lists; safepassage.matcher.approximate trains with an HNSW graph above this


@dataclass
class Rates:
    """Costs per unit for the estimates, updated from each size of 100k or more that the run
    measures. The defaults: this 2-vCPU machine, idle, at 100k to 300k (two build threads),
    with some margin; on a busy machine the builds can take several times longer."""

    generate_s_per_row: float = 5e-6
    ground_truth_gflops: float = 80.0  # BLAS with --build-threads threads
    batched_gflops: float = 35.0  # flat batched search, one thread
    bandwidth_gb_s: float = 20.0
    exact_over_bound: float = 1.3  # flat single-query latency over the bandwidth bound
    flat_build_s_per_row: float = 5e-7
    # Approximate builds = k-means on the training sample + PQ code books (pq only; FAISS trains
    # them on at most 65,536 points, so a fixed cost) + adding every row (coarse assignment
    # and encoding). k-means compares each point with every centroid up to 2048 lists, and
    # searches an HNSW graph of the centroids above (safepassage.matcher.approximate).
    kmeans_s_per_point_list: float = 8e-8  # up to 2048 lists
    hnsw_kmeans_s_per_point: float = 2e-4  # above 2048 lists: 1.3e-4 measured at 4096 lists
    pq_codebook_s: float = 10.0
    add_s_per_row: dict[str, float] = field(default_factory=lambda: {"sq8": 7e-6, "pq": 1.5e-5, "flat": 7e-6})
    # Approximate single-probe latency: a fixed part (coarse quantizer, re-ranking, Python)
    # plus a cost per code scanned (nprobe lists of about N / nlist codes each).
    search_overhead_ms: float = 0.25
    search_ns_per_code: float = 30.0


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    seconds: float
    peak_bytes: int  # resident at the stage's peak, the gallery array included


def code_bytes(params: ApproximateParams) -> int:
    return {"sq8": DIMENSION, "pq": params.pq_m, "flat": 4 * DIMENSION}[params.codes]


def scanned_codes(params: ApproximateParams, size: int) -> float:
    return min(params.nprobe, params.nlist) * size / params.nlist


def training_s(params: ApproximateParams, size: int, rates: Rates) -> float:
    points = min(params.train_size, size)
    if params.nlist > HNSW_TRAINING_ABOVE:
        kmeans = points * rates.hnsw_kmeans_s_per_point
    else:
        kmeans = points * params.nlist * rates.kmeans_s_per_point_list
    return kmeans + (rates.pq_codebook_s if params.codes == "pq" else 0.0)


def approximate_estimate(
    name: str, variants: list[ApproximateParams], size: int, options: Options, rates: Rates
) -> StageEstimate:
    base, d, q = variants[0], DIMENSION, options.queries
    build_s = training_s(base, size, rates) + size * rates.add_s_per_row[base.codes]
    search_s = 0.0
    for params in variants:
        single_ms = rates.search_overhead_ms + rates.search_ns_per_code * scanned_codes(params, size) / 1e6
        search_s += 2 * min(options.time_limit, q * single_ms / 1000)  # single, then batched (no faster)
    gallery, flat = size * (4 * d + 8), size * (4 * d + 40)
    index = flat + size * (code_bytes(base) + 40)
    # The float32 part is added by blocks of 1M rows: a std::vector doubling briefly holds
    # the old buffer and the new one (bounded here by one more copy of the vectors).
    growth = size * 4 * d if size > 1 << 20 else 0
    return StageEstimate(name, build_s + search_s, gallery + index + growth)


def estimate(size: int, options: Options, rates: Rates) -> list[StageEstimate]:
    """Time and resident memory of each stage at `size`, from the rates measured so far."""
    q, d = options.queries, DIMENSION
    gallery = size * (4 * d + 8)
    flat = size * (4 * d + 40)  # FlatIndex.memory_bytes(): vectors, ids, id map
    bound_s = size * d * 4 / (rates.bandwidth_gb_s * 1e9)
    scan_s = 2.0 * q * size * d / (rates.batched_gflops * 1e9)
    bandwidth_s = 2.0 * options.bandwidth_repeats * options.bandwidth_gib * GIB / (rates.bandwidth_gb_s * 1e9)
    stages = [
        StageEstimate("generate", size * rates.generate_s_per_row, gallery),
        StageEstimate("bandwidth", bandwidth_s + 1.0, gallery + int(options.bandwidth_gib * GIB)),
        StageEstimate("ground truth", 2.0 * q * size * d / (rates.ground_truth_gflops * 1e9), gallery),
    ]
    built: list[ApproximateParams] = []
    for spec in ordered(options.configs):
        if spec.family == "flat":
            seconds = size * rates.flat_build_s_per_row
            seconds += min(options.time_limit, q * bound_s * rates.exact_over_bound) + min(
                options.time_limit, scan_s
            )
            stages.append(StageEstimate("flat", seconds, gallery + flat))
        elif spec.family in APPROXIMATE_CODES:
            base = with_values(default_params(size, APPROXIMATE_CODES[spec.family]), spec.build)
            variants = search_variants(spec, base)
            built.extend(variants)
            stages.append(approximate_estimate(spec.text, variants, size, options, rates))
        else:
            with contextlib.suppress(IndexOverBudget):
                chosen = policy_params(size)
                if chosen is not None and chosen not in built:
                    stages.append(approximate_estimate("policy", [chosen], size, options, rates))
    return stages


def format_estimate(size: int, stages: list[StageEstimate]) -> str:
    total = sum(s.seconds for s in stages)
    peak = max(s.peak_bytes for s in stages)
    parts = ", ".join(f"{s.stage} {s.seconds:,.0f} s / {s.peak_bytes / GIB:.1f} GiB" for s in stages)
    return f"estimate for {size:,}: about {total / 60:.1f} min, peak {peak / GIB:.1f} GiB ({parts})"


def update_rates(rates: Rates, result: SizeResult) -> None:
    """Take the run's own rates from this size, unless it is too small to say much (fixed costs
    and caches dominate below 100k)."""
    size = result.size
    if size < 100_000:
        return
    rates.generate_s_per_row = result.generation_s / size
    rates.ground_truth_gflops = float(result.ground_truth["gflops"])
    rates.bandwidth_gb_s = result.bandwidth.gb_s
    for entry in result.indexes:
        if entry.params is None:
            rates.flat_build_s_per_row = entry.build.seconds / size
            rates.batched_gflops = (
                2.0 * entry.batched.queries * size * DIMENSION / entry.batched.seconds / 1e9
            )
            if entry.latency_over_bound:
                rates.exact_over_bound = entry.latency_over_bound
            continue
        params = ApproximateParams.from_dict(entry.params)
        if entry.build_shared_with is None and params.codes != "pq":
            # What the build took beyond adding at the assumed rate is put down to k-means.
            kmeans_s = max(0.0, entry.build.seconds - size * rates.add_s_per_row[params.codes])
            points = min(params.train_size, size)
            if params.nlist > HNSW_TRAINING_ABOVE:
                rates.hnsw_kmeans_s_per_point = kmeans_s / points
            else:
                rates.kmeans_s_per_point_list = kmeans_s / (points * params.nlist)
        codes = scanned_codes(params, size)
        if codes >= 10_000:  # large enough to dominate the fixed part
            per_code = (entry.single.mean_ms - rates.search_overhead_ms) * 1e6 / codes
            rates.search_ns_per_code = max(per_code, 1.0)
