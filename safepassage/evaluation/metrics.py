"""Error rates of biometric comparisons, in the conventions of NIST FRTE and ISO/IEC 19795-1.

Pure numpy, no I/O. Conventions, held throughout:

- A comparison (1:1) or a search's candidate (1:N) is *accepted* when its score is at or beyond the
  threshold: score >= t for similarities (`higher_is_closer=True`, e.g. cosine), score <= t for
  distances (`higher_is_closer=False`, e.g. dlib's Euclidean). Thresholds are always reported in the
  caller's own score units. Internally distances are negated, so one code path serves both.
- Verification (ISO/IEC 19795-1, NIST FRTE 1:1): FMR(t) = impostor comparisons accepted / impostor
  comparisons; FNMR(t) = genuine comparisons rejected / genuine comparisons. FNMR "at FMR = x" is read
  at the most lenient threshold whose FMR does not exceed x (NIST's convention: the threshold is set
  on impostors, and the error it then costs on genuine comparisons is reported).
- Open-set identification (NIST FRTE 1:N, rank-1 with a threshold): FPIR(t) = non-mated searches
  whose top candidate is accepted / non-mated searches; FNIR(t) = mated searches in which the enrolled
  identity is *not* the top candidate at or beyond the threshold / mated searches. A mated search whose
  top candidate is someone else is a miss at every threshold.
- Support (intervals.py): an operating point at rate x on n trials is `supported` when n * x >= 10,
  i.e. its threshold is set by at least ten errors; below that it is reported with its count and
  interval, never as a validated rate. Each point carries its counts (k of n) so that intervals can be
  drawn; where no error was seen, the rule of three (95 % upper bound ~ 3/n, ISO/IEC 19795-1) is the
  figure to quote, and only there is an upper bound written.
- LFW 10-fold accuracy (Huang et al., LFW technical report): threshold chosen on nine folds, accuracy
  measured on the tenth; mean and the sample standard deviation (n - 1) across folds, from which LFW's
  standard error is std / sqrt(folds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from safepassage.evaluation import intervals

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Counts are compared against target * n; a target like 0.003 on 1000 trials must allow 3 errors even
# though 0.003 * 1000 is 2.9999999999999996 in binary floating point.
_COUNT_SLACK = 1e-9


def _count(rate: float, trials: int) -> int:
    """The whole number of trials behind a rate read off a curve (k = rate * n, exactly)."""
    return round(rate * trials)


def _scores(values: object, name: str, *, allow_infinite: bool = False) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(array).any() or (not allow_infinite and not np.isfinite(array).all()):
        raise ValueError(f"{name}: scores must be finite numbers")
    array = array.copy()
    array.setflags(write=False)
    return array


def _closeness(scores: FloatArray, higher_is_closer: bool) -> FloatArray:
    """Scores turned into 'higher is closer' so that acceptance is always `closeness >= t`."""
    return scores if higher_is_closer else -scores


@dataclass(frozen=True)
class VerificationScores:
    """1:1 comparison scores: genuine (same person) and impostor (different people)."""

    genuine: FloatArray
    impostor: FloatArray
    higher_is_closer: bool

    def __post_init__(self) -> None:
        genuine = _scores(self.genuine, "genuine")
        impostor = _scores(self.impostor, "impostor")
        if len(genuine) == 0 or len(impostor) == 0:
            raise ValueError("verification needs at least one genuine and one impostor score")
        object.__setattr__(self, "genuine", genuine)
        object.__setattr__(self, "impostor", impostor)


@dataclass(frozen=True)
class Curve:
    """An error trade-off curve, ordered from the strictest threshold to the most lenient.

    `fmr` rises and `fnmr` falls along it. The first point accepts nothing (FMR 0, FNMR 1) and the last
    accepts every score (FMR 1, FNMR 0). For open-set identification `fmr` holds FPIR and `fnmr` FNIR
    (also readable as `fpir` and `fnir`); the last point's FNIR is then the share of mated searches
    whose top candidate is someone else, which no threshold can recover, and its FPIR falls short of 1
    by the non-mated searches that returned no candidate at all.
    """

    fmr: FloatArray
    fnmr: FloatArray
    thresholds: FloatArray

    @property
    def fpir(self) -> FloatArray:
        return self.fmr

    @property
    def fnir(self) -> FloatArray:
        return self.fnmr


@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at the most lenient threshold whose FMR does not exceed `target_fmr`."""

    target_fmr: float
    threshold: float
    fmr: float
    fnmr: float
    impostor_comparisons: int
    false_matches: int  # k of impostor_comparisons accepted at the threshold
    genuine_comparisons: int
    false_non_matches: int  # k of genuine_comparisons rejected at the threshold
    supported: bool  # impostor_comparisons * target_fmr >= intervals.MIN_EXPECTED_ERRORS
    fmr_upper_bound_95: float | None  # rule of three, only where no false match was seen (else None)


@dataclass(frozen=True)
class OpenSetOperatingPoint:
    """FNIR at the most lenient threshold whose FPIR does not exceed `target_fpir`."""

    target_fpir: float
    threshold: float
    fpir: float
    fnir: float
    nonmated_searches: int
    false_positives: int  # k of nonmated_searches whose top candidate passes the threshold
    mated_searches: int
    misses: int  # k of mated_searches not found at rank 1 within the threshold
    supported: bool  # nonmated_searches * target_fpir >= intervals.MIN_EXPECTED_ERRORS
    fpir_upper_bound_95: float | None  # rule of three, only where no false positive was seen


def _trade_off(
    positives: FloatArray, negatives: FloatArray, higher_is_closer: bool, positives_total: int
) -> Curve:
    """Curve over every distinct threshold, given closeness scores ('higher is closer').

    `positives` are the scores that should be accepted (genuine / correct rank-1), out of
    `positives_total` (more than len(positives) when some can never be accepted, as open-set misses);
    `negatives` should be rejected.
    """
    distinct = np.unique(np.concatenate([positives, negatives]))[::-1]  # strictest first
    # -inf marks a search with no candidate to accept (open set): no threshold accepts it, so it is
    # never one; such searches still count in the denominators.
    distinct = distinct[np.isfinite(distinct)]
    # One threshold beyond the closest score, so the curve starts at 'accept nothing'; nextafter keeps
    # it finite (a JSON number) and as close to the data as a float allows.
    closest = distinct[0] if len(distinct) else 0.0
    thresholds = np.concatenate([[np.nextafter(closest, np.inf)], distinct])
    ascending_neg = np.sort(negatives)
    ascending_pos = np.sort(positives)
    accepted_neg = len(negatives) - np.searchsorted(ascending_neg, thresholds, side="left")
    accepted_pos = len(positives) - np.searchsorted(ascending_pos, thresholds, side="left")
    fmr = accepted_neg / len(negatives)
    fnmr = 1.0 - accepted_pos / positives_total
    shown = thresholds if higher_is_closer else -thresholds
    return Curve(fmr=fmr.astype(np.float64), fnmr=fnmr.astype(np.float64), thresholds=shown)


def roc(scores: VerificationScores) -> Curve:
    """FMR and FNMR at every distinct threshold (plus 'accept nothing'), strictest first."""
    return _trade_off(
        _closeness(scores.genuine, scores.higher_is_closer),
        _closeness(scores.impostor, scores.higher_is_closer),
        scores.higher_is_closer,
        len(scores.genuine),
    )


def eer(scores: VerificationScores) -> tuple[float, float]:
    """Equal error rate and its threshold: where FMR = FNMR on the ROC, linearly interpolated.

    Between the last point with FNMR > FMR and the first with FNMR <= FMR both rates are interpolated
    with the same weight, so the crossing gives one rate. Where FNMR = FMR exactly over a run of
    thresholds (e.g. 0 across a gap that separates the two sets), the threshold is the run's middle.
    """
    curve = roc(scores)
    gap = curve.fnmr - curve.fmr  # +1 at 'accept nothing', -1 at 'accept everything': it crosses 0
    after = int(np.argmax(gap <= 0.0))
    if gap[after] == 0.0:
        last = after
        while last + 1 < len(gap) and gap[last + 1] == 0.0:
            last += 1
        threshold = 0.5 * (curve.thresholds[after] + curve.thresholds[last])
        return float(curve.fmr[after]), float(threshold)
    before = after - 1
    weight = gap[before] / (gap[before] - gap[after])
    rate = curve.fmr[before] + weight * (curve.fmr[after] - curve.fmr[before])
    threshold = curve.thresholds[before] + weight * (curve.thresholds[after] - curve.thresholds[before])
    return float(rate), float(threshold)


def _lenient_index(rates: FloatArray, trials: int, target: float) -> int:
    """Index of the most lenient curve point whose error count is within target * trials."""
    allowed = math.floor(target * trials + _COUNT_SLACK)
    counts = np.rint(rates * trials)
    # Counts never fall along the curve, so the points within the target are a prefix.
    return int(np.count_nonzero(counts <= allowed)) - 1


def _check_target(target: float, name: str) -> float:
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target {name} must be in (0, 1]; got {target!r}")
    return float(target)


def fnmr_at_fmr(scores: VerificationScores, target: float) -> OperatingPoint:
    """FNMR at the most lenient threshold with FMR <= `target` (NIST FRTE 1:1), with its support."""
    target = _check_target(target, "FMR")
    curve = roc(scores)
    n, genuine = len(scores.impostor), len(scores.genuine)
    i = _lenient_index(curve.fmr, n, target)
    false_matches = _count(float(curve.fmr[i]), n)
    return OperatingPoint(
        target_fmr=target,
        threshold=float(curve.thresholds[i]),
        fmr=float(curve.fmr[i]),
        fnmr=float(curve.fnmr[i]),
        impostor_comparisons=n,
        false_matches=false_matches,
        genuine_comparisons=genuine,
        false_non_matches=_count(float(curve.fnmr[i]), genuine),
        supported=intervals.supported(n, target),
        fmr_upper_bound_95=intervals.rule_of_three(n) if false_matches == 0 else None,
    )


@dataclass(frozen=True)
class OpenSetScores:
    """Outcome of open-set searches against a gallery.

    `mated_rank1`: per mated search (the person is enrolled), the top candidate's score where it is the
    enrolled identity, else anything (the worst score, by convention): such a search is a miss at every
    threshold, decided by `mated_rank_of_true`, never by this value. `mated_rank_of_true`: 1-based rank
    of the enrolled identity among the candidates returned, 0 when it is not among them.
    `nonmated_top`: per non-mated search (the person is not enrolled), the top candidate's score, or
    the worst score (-inf for similarities, +inf for distances) where it returned no candidate.
    """

    mated_rank1: FloatArray
    mated_rank_of_true: IntArray
    nonmated_top: FloatArray
    higher_is_closer: bool

    def __post_init__(self) -> None:
        mated = _scores(self.mated_rank1, "mated_rank1", allow_infinite=True)
        ranks = np.asarray(self.mated_rank_of_true).reshape(-1)
        if not np.issubdtype(ranks.dtype, np.integer) or (ranks < 0).any():
            raise ValueError("mated_rank_of_true must be whole numbers >= 0 (0 = not among the candidates)")
        ranks = ranks.astype(np.int64)
        ranks.setflags(write=False)
        nonmated = _scores(self.nonmated_top, "nonmated_top", allow_infinite=True)
        for name, values in (("mated_rank1", mated), ("nonmated_top", nonmated)):
            if np.isposinf(_closeness(values, self.higher_is_closer)).any():
                worst = "-inf" if self.higher_is_closer else "+inf"
                raise ValueError(f"{name}: the only infinite score allowed is the worst one, {worst}")
        if len(mated) != len(ranks):
            raise ValueError(f"{len(mated)} mated scores but {len(ranks)} ranks")
        if len(mated) == 0 or len(nonmated) == 0:
            raise ValueError("open-set evaluation needs at least one mated and one non-mated search")
        object.__setattr__(self, "mated_rank1", mated)
        object.__setattr__(self, "mated_rank_of_true", ranks)
        object.__setattr__(self, "nonmated_top", nonmated)


def fnir_fpir_curve(scores: OpenSetScores) -> Curve:
    """FNIR against FPIR at every distinct threshold, strictest first (`fmr` = FPIR, `fnmr` = FNIR)."""
    hits = scores.mated_rank_of_true == 1
    return _trade_off(
        _closeness(scores.mated_rank1[hits], scores.higher_is_closer),
        _closeness(scores.nonmated_top, scores.higher_is_closer),
        scores.higher_is_closer,
        len(scores.mated_rank1),
    )


def fnir_at_fpir(scores: OpenSetScores, target: float) -> OpenSetOperatingPoint:
    """FNIR at the most lenient threshold with FPIR <= `target` (NIST FRTE 1:N), with its support."""
    target = _check_target(target, "FPIR")
    curve = fnir_fpir_curve(scores)
    n, mated = len(scores.nonmated_top), len(scores.mated_rank1)
    i = _lenient_index(curve.fpir, n, target)
    false_positives = _count(float(curve.fpir[i]), n)
    return OpenSetOperatingPoint(
        target_fpir=target,
        threshold=float(curve.thresholds[i]),
        fpir=float(curve.fpir[i]),
        fnir=float(curve.fnir[i]),
        nonmated_searches=n,
        false_positives=false_positives,
        mated_searches=mated,
        misses=_count(float(curve.fnir[i]), mated),
        supported=intervals.supported(n, target),
        fpir_upper_bound_95=intervals.rule_of_three(n) if false_positives == 0 else None,
    )


def rank_rate(scores: OpenSetScores, k: int) -> float:
    """Share of mated searches with the enrolled identity among the top `k` candidates (no threshold:
    the closed-set rank-k identification rate, a point of the CMC curve)."""
    if k < 1:
        raise ValueError(f"rank must be >= 1; got {k}")
    ranks = scores.mated_rank_of_true
    return float(np.count_nonzero((ranks >= 1) & (ranks <= k)) / len(ranks))


def ten_fold_accuracy(
    pair_scores: FloatArray, same: BoolArray, folds: IntArray, *, higher_is_closer: bool
) -> tuple[float, float]:
    """LFW protocol accuracy: for each fold, the threshold of best accuracy on the other folds, applied to
    it. Returns the mean over folds and the sample standard deviation (n - 1, as LFW defines it; LFW's
    standard error is std / sqrt(folds)). Works for any number of folds >= 2, LFW's being 10.

    Candidate thresholds are the midpoints between consecutive distinct training scores (plus one beyond
    each end), so a threshold never sits on a training score; among equally accurate candidates the
    middle one is taken.
    """
    outcomes = _fold_outcomes(pair_scores, same, folds, higher_is_closer)
    accuracies = [correct / total for correct, total in outcomes]
    return float(np.mean(accuracies)), float(np.std(accuracies, ddof=1))


def cross_validated_correct(
    pair_scores: FloatArray, same: BoolArray, folds: IntArray, *, higher_is_closer: bool
) -> tuple[int, int]:
    """The counts behind `ten_fold_accuracy`: pairs judged right, each at its own fold's threshold, of all
    pairs (k of n, for an interval; the mean over folds equals k / n when the folds are of one size)."""
    outcomes = _fold_outcomes(pair_scores, same, folds, higher_is_closer)
    return sum(correct for correct, _ in outcomes), sum(total for _, total in outcomes)


def _fold_outcomes(
    pair_scores: FloatArray, same: BoolArray, folds: IntArray, higher_is_closer: bool
) -> list[tuple[int, int]]:
    """Per fold: (pairs judged right at the threshold learnt on the other folds, pairs in the fold)."""
    closeness = _closeness(_scores(pair_scores, "pair_scores"), higher_is_closer)
    labels = np.asarray(same, dtype=bool).reshape(-1)
    fold_ids = np.asarray(folds).reshape(-1)
    if not len(closeness) == len(labels) == len(fold_ids):
        raise ValueError(f"{len(closeness)} scores, {len(labels)} labels, {len(fold_ids)} fold ids")
    names = np.unique(fold_ids)
    if len(names) < 2:
        raise ValueError("cross-validation needs at least two folds")
    outcomes = []
    for name in names:
        test = fold_ids == name
        threshold = _best_threshold(closeness[~test], labels[~test])
        correct = int(np.count_nonzero((closeness[test] >= threshold) == labels[test]))
        outcomes.append((correct, int(np.count_nonzero(test))))
    return outcomes


def _best_threshold(closeness: FloatArray, same: BoolArray) -> float:
    distinct = np.unique(closeness)
    candidates = np.concatenate(
        [[distinct[0] - 1.0], 0.5 * (distinct[1:] + distinct[:-1]), [distinct[-1] + 1.0]]
    )
    same_sorted = np.sort(closeness[same])
    other_sorted = np.sort(closeness[~same])
    true_accepts = len(same_sorted) - np.searchsorted(same_sorted, candidates, side="left")
    true_rejects = np.searchsorted(other_sorted, candidates, side="left")
    correct = true_accepts + true_rejects
    best = np.flatnonzero(correct == correct.max())
    return float(candidates[best[len(best) // 2]])


class GroupRatio(NamedTuple):
    """The worst and best cohort by name, and how many times worse the worst is (>= 1)."""

    worst: str
    best: str
    ratio: float


def group_ratio(values: dict[str, float], *, higher_is_better: bool = False) -> GroupRatio:
    """Worst and best group of one figure, and their ratio (NIST FRTE demographics' max/min).

    By default the figure is an error rate (higher is worse) and the ratio is worst / best; for a
    figure where higher is better (accuracy, rank-1 rate) pass `higher_is_better=True` and the ratio is
    best / worst, so it always reads "times worse". A zero denominator gives inf (1.0 when both are 0).
    """
    if not values:
        raise ValueError("group_ratio needs at least one group")
    if any(math.isnan(v) for v in values.values()):
        raise ValueError("group values must not be NaN")
    low = min(values, key=lambda g: values[g])
    high = max(values, key=lambda g: values[g])
    worst, best = (low, high) if higher_is_better else (high, low)
    bigger, smaller = values[high], values[low]
    # A zero best rate makes any other rate infinitely worse; two zeros are equal.
    ratio = (1.0 if bigger == 0.0 else math.inf) if smaller == 0.0 else bigger / smaller
    return GroupRatio(worst=worst, best=best, ratio=ratio)
