"""Operating points as the report holds them: metrics.py's points with their counts and 95 % intervals.

Also the bridge from a gallery run's searches to metrics.OpenSetScores, shared by the whole set's
figures (run.py) and the like-for-like ones (common_set.py).
"""

from __future__ import annotations

import math

import numpy as np

from safepassage.evaluation import intervals, metrics
from safepassage.evaluation.identification import GalleryRun
from safepassage.evaluation.report import IdentificationPoint, VerificationPoint


def ci95(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95 %, or NaN (null in the JSON) where there were no trials."""
    return intervals.clopper_pearson(k, n) if n > 0 else (math.nan, math.nan)


def verification_point(point: metrics.OperatingPoint) -> VerificationPoint:
    return VerificationPoint(
        target_fmr=point.target_fmr,
        threshold=point.threshold,
        fmr=point.fmr,
        false_matches=point.false_matches,
        impostor_comparisons=point.impostor_comparisons,
        fmr_ci95=intervals.clopper_pearson(point.false_matches, point.impostor_comparisons),
        fnmr=point.fnmr,
        false_non_matches=point.false_non_matches,
        genuine_comparisons=point.genuine_comparisons,
        fnmr_ci95=intervals.clopper_pearson(point.false_non_matches, point.genuine_comparisons),
        expected_false_matches=intervals.expected_errors(point.impostor_comparisons, point.target_fmr),
        supported=point.supported,
        fmr_upper_bound_95=point.fmr_upper_bound_95,
    )


def identification_point(point: metrics.OpenSetOperatingPoint) -> IdentificationPoint:
    return IdentificationPoint(
        target_fpir=point.target_fpir,
        threshold=point.threshold,
        fpir=point.fpir,
        false_positives=point.false_positives,
        nonmated_searches=point.nonmated_searches,
        fpir_ci95=intervals.clopper_pearson(point.false_positives, point.nonmated_searches),
        fnir=point.fnir,
        misses=point.misses,
        mated_searches=point.mated_searches,
        fnir_ci95=intervals.clopper_pearson(point.misses, point.mated_searches),
        expected_false_positives=intervals.expected_errors(point.nonmated_searches, point.target_fpir),
        supported=point.supported,
        fpir_upper_bound_95=point.fpir_upper_bound_95,
    )


def open_set(run: GalleryRun) -> metrics.OpenSetScores:
    rank1, ranks, top = run.open_set_arrays()
    finite = np.concatenate([rank1[np.isfinite(rank1)], top[np.isfinite(top)]])
    # A non-mated probe without a face raises no alarm: a score no threshold accepts, but finite.
    beyond = (finite.min() - 1.0 if run.higher_is_closer else finite.max() + 1.0) if len(finite) else 0.0
    top = np.where(np.isfinite(top), top, beyond)
    return metrics.OpenSetScores(rank1, ranks, top, run.higher_is_closer)
