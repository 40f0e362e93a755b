"""Measuring one index for the scale benchmark: build cost, recall, latency of single probes, throughput
of batches, and the entry that records them (memory comes from the index's own estimate)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.machine_profile import MIB, PEAK_RSS, faiss_threads, status_bytes
from safepassage.matcher import Hits
from safepassage.matcher.approximate import recall_at_k

Vectors = npt.NDArray[np.float32]

TOP_K = 10
WARMUP_QUERIES = 5


@dataclass(frozen=True)
class BuildCost:
    seconds: float
    threads: int
    rss_growth_mib: float  # resident memory after the build minus before
    peak_rss_growth_mib: float | None  # highest resident memory during the build minus before


def timed_build(build: Callable[[], Any], threads: int) -> tuple[Any, BuildCost]:
    gc.collect()
    before = status_bytes("VmRSS")
    peak_known = PEAK_RSS.restart()
    started = time.perf_counter()
    with faiss_threads(threads):
        index = build()
    seconds = time.perf_counter() - started
    after = status_bytes("VmRSS")
    peak = (status_bytes("VmHWM") - before) / MIB if peak_known else None
    return index, BuildCost(seconds, threads, (after - before) / MIB, peak)


@dataclass(frozen=True)
class Recall:
    queries: int  # probes whose answers were checked (all of them unless the batched run was cut short)
    at_1: float
    at_10: float
    at_1_mated: float | None
    at_1_non_mated: float | None
    top1_score_error: float  # largest |score - exact score| where the top-1 ids agree: re-ranking is exact


def measure_recall(found: Hits, truth: Hits, mates: npt.NDArray[np.int64]) -> Recall:
    answered = len(found.ids)
    exact = Hits(truth.scores[:answered], truth.ids[:answered])
    mated = mates[:answered] >= 0

    def part(rows: npt.NDArray[np.bool_]) -> float | None:
        if not rows.any():
            return None
        return recall_at_k(
            Hits(found.scores[rows], found.ids[rows]), Hits(exact.scores[rows], exact.ids[rows]), 1
        )

    agree = found.ids[:, 0] == exact.ids[:, 0]
    error = np.abs(found.scores[agree, 0].astype(np.float64) - exact.scores[agree, 0].astype(np.float64))
    return Recall(
        queries=answered,
        at_1=recall_at_k(found, exact, 1),
        at_10=recall_at_k(found, exact, TOP_K),
        at_1_mated=part(mated),
        at_1_non_mated=part(~mated),
        top1_score_error=float(error.max()) if len(error) else 0.0,
    )


@dataclass(frozen=True)
class Latency:
    """One probe per call, one thread, probes in order until all are done or the time limit."""

    queries: int
    seconds: float
    qps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    truncated: bool  # stopped by --time-limit before every probe was searched


def single_queries(index: Any, probes: Vectors, time_limit: float) -> Latency:
    for i in range(min(WARMUP_QUERIES, len(probes))):
        index.search(probes[i : i + 1], TOP_K)
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(len(probes)):
        start = time.perf_counter()
        index.search(probes[i : i + 1], TOP_K)
        latencies.append(time.perf_counter() - start)
        if start + latencies[-1] - started > time_limit:
            break
    seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0
    return Latency(
        queries=len(ms),
        seconds=seconds,
        qps=len(ms) / seconds,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        truncated=len(ms) < len(probes),
    )


@dataclass(frozen=True)
class Throughput:
    """Batches of `batch` probes per call, one thread, until all are done or the time limit."""

    batch: int
    queries: int
    seconds: float
    qps: float
    truncated: bool


def batched_queries(index: Any, probes: Vectors, batch: int, time_limit: float) -> tuple[Throughput, Hits]:
    index.search(probes[:batch], TOP_K)  # warm-up
    scores = np.empty((len(probes), TOP_K), dtype=np.float32)
    ids = np.empty((len(probes), TOP_K), dtype=np.int64)
    done = 0
    started = time.perf_counter()
    while done < len(probes):
        hits = index.search(probes[done : done + batch], TOP_K)
        stop = done + len(hits.ids)
        scores[done:stop], ids[done:stop] = hits.scores, hits.ids
        done = stop
        if time.perf_counter() - started > time_limit:
            break
    seconds = time.perf_counter() - started
    throughput = Throughput(batch, done, seconds, done / seconds, done < len(probes))
    return throughput, Hits(scores[:done], ids[:done])


@dataclass(frozen=True)
class IndexResult:
    name: str
    config: str  # the --configs entry (or "policy") it was measured for
    kind: str  # "flat" or the approximate index's kind, e.g. "ivf_hnsw_sq8"
    params: dict[str, Any] | None  # ApproximateParams; None for flat
    build: BuildCost
    build_shared_with: str | None  # a search variant measured on the build of that entry
    memory_bytes: int  # the index's own estimate (memory_bytes())
    recall: Recall
    single: Latency
    batched: Throughput
    speedup_vs_exact: float | None  # single-query q/s over flat's at this size
    latency_over_bound: float | None  # single-query p50 over the bandwidth bound (flat only)
