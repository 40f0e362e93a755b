"""The evaluation metrics on hand-made score sets whose error rates can be worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safepassage.evaluation.metrics import (
    OpenSetScores,
    VerificationScores,
    eer,
    fnir_at_fpir,
    fnir_fpir_curve,
    fnmr_at_fmr,
    group_ratio,
    rank_rate,
    roc,
    ten_fold_accuracy,
)

# Sanity ranges a working face pipeline passes and one returning noise must fail (as the run tests use).
EER_CEILING = 0.15
FNMR_AT_1E2_CEILING = 0.5


def _similarities(genuine: list[float], impostor: list[float]) -> VerificationScores:
    return VerificationScores(np.array(genuine), np.array(impostor), higher_is_closer=True)


def _distances(genuine: list[float], impostor: list[float]) -> VerificationScores:
    """The same comparisons as `_similarities`, expressed as distances 1 - similarity."""
    return VerificationScores(1.0 - np.array(genuine), 1.0 - np.array(impostor), higher_is_closer=False)


# Accepting >= t: at 0.9 FMR 0 / FNMR 1/2, at 0.6 FMR 1/4 / FNMR 1/2, at 0.5 FMR 1/4 / FNMR 0.
CROSSING_GENUINE = [0.9, 0.5]
CROSSING_IMPOSTOR = [0.6, 0.3, 0.2, 0.1]


def test_roc_lists_every_distinct_threshold_from_accept_nothing_to_accept_all() -> None:
    curve = roc(_similarities(CROSSING_GENUINE, CROSSING_IMPOSTOR))
    assert curve.thresholds[0] > 0.9  # just beyond the closest score: nothing accepted
    np.testing.assert_allclose(curve.thresholds[1:], [0.9, 0.6, 0.5, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(curve.fmr, [0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.fnmr, [1, 0.5, 0.5, 0, 0, 0, 0])


def test_roc_of_distances_reports_thresholds_in_distance_units() -> None:
    curve = roc(_distances(CROSSING_GENUINE, CROSSING_IMPOSTOR))
    assert curve.thresholds[0] < 0.1
    np.testing.assert_allclose(curve.thresholds[1:], [0.1, 0.4, 0.5, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(curve.fmr, [0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.fnmr, [1, 0.5, 0.5, 0, 0, 0, 0])


def test_eer_interpolates_between_the_points_either_side_of_the_crossing() -> None:
    # FNMR - FMR is +1/4 at 0.6 and -1/4 at 0.5: half way, both rates are 1/4, at threshold 0.55.
    assert eer(_similarities(CROSSING_GENUINE, CROSSING_IMPOSTOR)) == pytest.approx((0.25, 0.55))
    assert eer(_distances(CROSSING_GENUINE, CROSSING_IMPOSTOR)) == pytest.approx((0.25, 0.45))


def test_eer_on_an_exact_crossing_and_on_separated_sets() -> None:
    # At 0.6: one impostor (0.6) accepted of four, one genuine (0.4) rejected of four.
    assert eer(_similarities([0.9, 0.8, 0.7, 0.4], [0.6, 0.5, 0.3, 0.2])) == pytest.approx((0.25, 0.6))
    rate, threshold = eer(_similarities([0.8, 0.9], [0.1, 0.2]))
    assert rate == 0.0
    assert 0.2 < threshold <= 0.8


# 1000 impostors 0.000 .. 0.999; genuine scores placed around the FMR 1e-2 and 1e-3 thresholds.
IMPOSTOR_1000 = list(np.arange(1000) / 1000)
GENUINE_4 = [0.9995, 0.9955, 0.5, 0.2]


def test_fnmr_at_fmr_takes_the_most_lenient_threshold_within_the_target() -> None:
    scores = _similarities(GENUINE_4, IMPOSTOR_1000)
    at_1e2 = fnmr_at_fmr(scores, 1e-2)  # ten impostors may pass: 0.990 .. 0.999
    assert at_1e2.threshold == pytest.approx(0.99)
    assert (at_1e2.fmr, at_1e2.fnmr) == pytest.approx((0.01, 0.5))
    assert at_1e2.impostor_comparisons == 1000
    assert (at_1e2.false_matches, at_1e2.genuine_comparisons, at_1e2.false_non_matches) == (10, 4, 2)
    assert at_1e2.supported  # ten false matches allowed: exactly the rule's minimum
    assert at_1e2.fmr_upper_bound_95 is None  # false matches were seen: no rule-of-three bound

    at_1e3 = fnmr_at_fmr(scores, 1e-3)  # one impostor (0.999) may pass: a threshold set by one error
    assert at_1e3.threshold == pytest.approx(0.999)
    assert (at_1e3.fmr, at_1e3.fnmr) == pytest.approx((0.001, 0.75))
    assert at_1e3.false_matches == 1
    assert not at_1e3.supported

    at_1e4 = fnmr_at_fmr(scores, 1e-4)  # no impostor may pass; 1000 comparisons cannot show 1e-4
    assert at_1e4.threshold == pytest.approx(0.9995)
    assert (at_1e4.fmr, at_1e4.fnmr) == pytest.approx((0.0, 0.75))
    assert not at_1e4.supported
    assert at_1e4.false_matches == 0
    assert at_1e4.fmr_upper_bound_95 == pytest.approx(1 - 0.05 ** (1 / 1000))  # the rule of three, ~3/n


def test_fnmr_at_fmr_counts_targets_that_are_not_exact_in_binary() -> None:
    # 0.003 * 1000 is 2.9999999999999996 in floating point; three false matches are still allowed.
    point = fnmr_at_fmr(_similarities(GENUINE_4, IMPOSTOR_1000), 0.003)
    assert point.threshold == pytest.approx(0.997)
    assert point.fmr == pytest.approx(0.003)


def test_fnmr_at_fmr_of_distances_matches_similarities() -> None:
    genuine = list(1.0 - np.array(GENUINE_4))
    impostor = list(1.0 - np.array(IMPOSTOR_1000))
    point = fnmr_at_fmr(VerificationScores(np.array(genuine), np.array(impostor), False), 1e-2)
    assert point.threshold == pytest.approx(0.01)
    assert (point.fmr, point.fnmr) == pytest.approx((0.01, 0.5))


@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_curves_are_monotonic(higher_is_closer: bool) -> None:
    rng = np.random.default_rng(8)
    sign = 1.0 if higher_is_closer else -1.0
    scores = VerificationScores(
        sign * rng.normal(0.6, 0.1, 300).round(2),
        sign * rng.normal(0.2, 0.1, 3000).round(2),
        higher_is_closer,
    )
    curve = roc(scores)
    assert (np.diff(curve.fmr) >= 0).all() and (np.diff(curve.fnmr) <= 0).all()
    assert (np.diff(curve.thresholds) * sign < 0).all()  # strictest first, every threshold distinct
    assert (curve.fmr[0], curve.fnmr[0], curve.fmr[-1], curve.fnmr[-1]) == (0, 1, 1, 0)
    rates = [fnmr_at_fmr(scores, t).fnmr for t in (1e-1, 1e-2, 1e-3)]
    assert rates == sorted(rates)  # a stricter FMR never costs less FNMR


def _cosines(rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


def test_a_pipeline_of_random_embeddings_fails_the_sanity_ranges() -> None:
    rng = np.random.default_rng(19795)
    people = rng.normal(size=(200, 128))
    # A working pipeline: two images of a person embed near the person's point.
    first = people + 0.3 * rng.normal(size=people.shape)
    second = people + 0.3 * rng.normal(size=people.shape)
    good = VerificationScores(
        _cosines(rng, first, second), _cosines(rng, first, np.roll(second, 1, axis=0)), True
    )
    assert eer(good)[0] < EER_CEILING
    assert fnmr_at_fmr(good, 1e-2).fnmr < FNMR_AT_1E2_CEILING

    # A broken one: embeddings unrelated to the face.
    noise = rng.normal(size=(2, 200, 128))
    broken = VerificationScores(
        _cosines(rng, noise[0], noise[1]), _cosines(rng, noise[0], np.roll(noise[1], 1, axis=0)), True
    )
    rate, _ = eer(broken)
    assert 0.35 < rate < 0.65
    assert rate >= EER_CEILING
    assert fnmr_at_fmr(broken, 1e-2).fnmr >= FNMR_AT_1E2_CEILING

    # Shuffled labels: good scores attributed to the wrong pairs.
    pooled = rng.permutation(np.concatenate([good.genuine, good.impostor]))
    shuffled = VerificationScores(pooled[:200], pooled[200:], True)
    assert eer(shuffled)[0] >= EER_CEILING


# Open set, similarities. Five mated searches: three found at rank 1 (0.9, 0.8, 0.4), one at rank 2,
# one not among the candidates. Four non-mated searches whose top candidates score 0.7, 0.5, 0.3, 0.2.
MATED_RANK1 = [0.9, 0.8, 0.4, -math.inf, 0.0]
MATED_RANKS = [1, 1, 1, 2, 0]
NONMATED_TOP = [0.7, 0.5, 0.3, 0.2]


def _open_set(higher_is_closer: bool = True) -> OpenSetScores:
    sign = 1.0 if higher_is_closer else -1.0
    return OpenSetScores(
        sign * np.array(MATED_RANK1), np.array(MATED_RANKS), sign * np.array(NONMATED_TOP), higher_is_closer
    )


def test_fnir_fpir_curve_counts_wrong_rank1_as_misses_at_every_threshold() -> None:
    curve = fnir_fpir_curve(_open_set())
    np.testing.assert_allclose(curve.thresholds[1:], [0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2])
    np.testing.assert_allclose(curve.fpir, [0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.fnir, [1, 0.8, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4])


@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_fnir_at_fpir(higher_is_closer: bool) -> None:
    sign = 1.0 if higher_is_closer else -1.0
    scores = _open_set(higher_is_closer)
    quarter = fnir_at_fpir(scores, 0.25)  # one non-mated search (0.7) may raise an alarm
    assert quarter.threshold == pytest.approx(sign * 0.7)
    assert (quarter.fpir, quarter.fnir) == pytest.approx((0.25, 0.6))
    assert quarter.nonmated_searches == 4 and not quarter.supported  # one false positive: too few
    assert (quarter.false_positives, quarter.mated_searches, quarter.misses) == (1, 5, 3)
    assert quarter.fpir_upper_bound_95 is None

    half = fnir_at_fpir(scores, 0.5)  # two may: down to 0.4, where the third mated search passes
    assert half.threshold == pytest.approx(sign * 0.4)
    assert (half.fpir, half.fnir) == pytest.approx((0.5, 0.4))

    strict = fnir_at_fpir(scores, 0.1)  # none may; four searches cannot show 0.1
    assert strict.threshold == pytest.approx(sign * 0.8)
    assert (strict.fpir, strict.fnir) == pytest.approx((0.0, 0.6))
    assert strict.false_positives == 0 and strict.fpir_upper_bound_95 == pytest.approx(1 - 0.05 ** (1 / 4))
    assert not strict.supported


@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_a_search_without_candidates_is_never_a_false_positive(higher_is_closer: bool) -> None:
    sign = 1.0 if higher_is_closer else -1.0  # the worst score: -inf for similarities, +inf for distances
    scores = OpenSetScores(
        sign * np.array([0.9]), np.array([1]), sign * np.array([0.7, -math.inf]), higher_is_closer
    )
    curve = fnir_fpir_curve(scores)
    assert np.isfinite(curve.thresholds).all()
    np.testing.assert_allclose(curve.thresholds[1:], sign * np.array([0.9, 0.7]))
    np.testing.assert_allclose(curve.fpir, [0, 0, 0.5])
    np.testing.assert_allclose(curve.fnir, [1, 0, 0])
    assert fnir_at_fpir(scores, 1.0).fpir == pytest.approx(0.5)
    with pytest.raises(ValueError, match="worst"):  # the best infinity is no score a matcher gives
        OpenSetScores(sign * np.array([0.9]), np.array([1]), sign * np.array([math.inf]), higher_is_closer)


def test_rank_rates_ignore_thresholds() -> None:
    scores = _open_set()
    assert rank_rate(scores, 1) == pytest.approx(0.6)
    assert rank_rate(scores, 2) == pytest.approx(0.8)
    assert rank_rate(scores, 10) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        rank_rate(scores, 0)


def _lfw_folds(outlier: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ten folds of three same-person pairs (0.8, 0.85, 0.9) and three different-person pairs
    (0.1, 0.15, 0.2); with `outlier`, fold 0 has a fourth same-person pair scoring 0.05."""
    scores: list[float] = []
    same: list[bool] = []
    folds: list[int] = []
    for fold in range(10):
        pairs = [(0.8, True), (0.85, True), (0.9, True), (0.1, False), (0.15, False), (0.2, False)]
        if outlier and fold == 0:
            pairs.append((0.05, True))
        for score, label in pairs:
            scores.append(score)
            same.append(label)
            folds.append(fold)
    return np.array(scores), np.array(same), np.array(folds)


def test_ten_fold_accuracy_by_hand() -> None:
    scores, same, folds = _lfw_folds(outlier=False)
    assert ten_fold_accuracy(scores, same, folds, higher_is_closer=True) == pytest.approx((1.0, 0.0))
    # Every fold's threshold falls between 0.2 and 0.8, so fold 0 gets 6 of 7 right, the others all.
    scores, same, folds = _lfw_folds(outlier=True)
    accuracies = np.array([6 / 7] + [1.0] * 9)
    expected = (float(accuracies.mean()), float(accuracies.std(ddof=1)))
    assert ten_fold_accuracy(scores, same, folds, higher_is_closer=True) == pytest.approx(expected)
    assert ten_fold_accuracy(1.0 - scores, same, folds, higher_is_closer=False) == pytest.approx(expected)


def test_ten_fold_accuracy_of_random_scores_is_chance() -> None:
    rng = np.random.default_rng(10)
    same = np.tile([True, False], 300)
    mean, _ = ten_fold_accuracy(rng.random(600), same, np.repeat(np.arange(10), 60), higher_is_closer=True)
    assert 0.35 < mean < 0.65


def test_group_ratio() -> None:
    worst, best, ratio = group_ratio({"a": 0.02, "b": 0.05, "c": 0.01})
    assert (worst, best) == ("b", "c") and ratio == pytest.approx(5.0)
    accuracy = group_ratio({"a": 0.9, "b": 0.8}, higher_is_better=True)
    assert (accuracy.worst, accuracy.best) == ("b", "a") and accuracy.ratio == pytest.approx(1.125)
    assert group_ratio({"a": 0.0, "b": 0.1}).ratio == math.inf
    assert group_ratio({"a": 0.0, "b": 0.0}).ratio == 1.0
    with pytest.raises(ValueError):
        group_ratio({})


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        _similarities([0.5, math.nan], [0.1])
    with pytest.raises(ValueError):
        _similarities([], [0.1])
    with pytest.raises(ValueError):
        fnmr_at_fmr(_similarities([0.5], [0.1]), 0.0)
    with pytest.raises(ValueError):
        OpenSetScores(np.array([0.5]), np.array([-1]), np.array([0.1]), True)
