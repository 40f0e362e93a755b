"""Ground truth for the scale benchmark: the exact top-k of every probe, and what it says about the data."""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from benchmarks.machine_profile import faiss_threads, log
from benchmarks.synthetic_templates import DIMENSION, MATCH_THRESHOLD, SyntheticSet
from safepassage.matcher import Hits, Metric

Vectors = npt.NDArray[np.float32]

RESCORE_MARGIN = 10  # extra float32 candidates per probe re-scored in float64 for the ground truth
GROUND_TRUTH_CHUNK = 1 << 20  # gallery rows per BLAS pass of the ground truth


@dataclass(frozen=True)
class GroundTruth:
    hits: Hits  # exact top-k of every probe; scores are float64 distances rounded to float32
    seconds: float
    chunk_rows: int
    threads: int
    gflops: float  # arithmetic rate of the BLAS passes (2 * probes * size * d / seconds)


def exact_top_k(templates: Vectors, probes: Vectors, k: int, threads: int) -> GroundTruth:
    """Exact k-NN by BLAS over chunks of the gallery, merging each chunk's top candidates.

    faiss.knn computes float32 distances as |x|^2 + |y|^2 - 2 x.y with BLAS, whose
    rounding can swap near-ties; so each probe keeps k + RESCORE_MARGIN
    candidates, re-scored in float64 before the final order is taken. Memory:
    the candidates and FAISS's block buffers, a few MiB; the gallery is read in place.
    """
    started = time.perf_counter()
    size, q = len(templates), len(probes)
    depth = min(size, k + RESCORE_MARGIN)
    best_distances = np.zeros((q, 0), dtype=np.float32)
    best_ids = np.zeros((q, 0), dtype=np.int64)
    with faiss_threads(threads):
        for start in range(0, size, GROUND_TRUTH_CHUNK):
            chunk = templates[start : start + GROUND_TRUTH_CHUNK]
            distances, ids = faiss.knn(probes, chunk, min(depth, len(chunk)))
            best_distances = np.concatenate([best_distances, distances], axis=1)
            best_ids = np.concatenate([best_ids, ids + start], axis=1)
            if best_ids.shape[1] > depth:
                keep = np.argpartition(best_distances, depth - 1, axis=1)[:, :depth]
                best_distances = np.take_along_axis(best_distances, keep, axis=1)
                best_ids = np.take_along_axis(best_ids, keep, axis=1)
            if size > GROUND_TRUTH_CHUNK:
                done = min(start + GROUND_TRUTH_CHUNK, size)
                log(f"  ground truth: {done:,} of {size:,} rows, {time.perf_counter() - started:.0f} s")
    candidates = templates[best_ids].astype(np.float64)  # (q, depth, d): 20 MiB at 1,000 probes
    exact = np.linalg.norm(candidates - probes[:, None, :].astype(np.float64), axis=2)
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    take = min(k, size)
    scores = np.full((q, k), Metric.L2.worst_score(), dtype=np.float32)
    found = np.full((q, k), -1, dtype=np.int64)
    scores[:, :take] = np.take_along_axis(exact, order, axis=1)[:, :take]
    found[:, :take] = np.take_along_axis(best_ids, order, axis=1)[:, :take]
    seconds = time.perf_counter() - started
    return GroundTruth(
        Hits(scores, found), seconds, GROUND_TRUTH_CHUNK, threads, 2.0 * q * size * DIMENSION / seconds / 1e9
    )


@dataclass(frozen=True)
class SearchData:
    """What the gallery looks like to 1:N search, from the exact top-1 of each probe."""

    threshold: float
    mated_top1_distance_p50: float | None
    non_mated_top1_distance_p50: float | None
    mated_rank1_identity_rate: float | None  # the exact top-1 is a capture of the probe's own identity
    non_mated_within_threshold: float | None  # the exact top-1 of a stranger is within the threshold


def search_data(data: SyntheticSet, truth: Hits) -> SearchData:
    mated = data.mates >= 0
    top_distance, top_identity = truth.scores[:, 0], truth.ids[:, 0] // data.samples_per_identity

    def median(rows: npt.NDArray[np.bool_]) -> float | None:
        return float(np.median(top_distance[rows])) if rows.any() else None

    def share(values: npt.NDArray[np.bool_]) -> float | None:
        return float(values.mean()) if len(values) else None

    return SearchData(
        threshold=MATCH_THRESHOLD,
        mated_top1_distance_p50=median(mated),
        non_mated_top1_distance_p50=median(~mated),
        mated_rank1_identity_rate=share(top_identity[mated] == data.mates[mated]),
        non_mated_within_threshold=share(top_distance[~mated] <= MATCH_THRESHOLD),
    )
