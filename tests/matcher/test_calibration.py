"""ImpostorScores and the two calibrations, on synthetic scores with known answers.

The real-face acceptance test is test_calibration_faces.py.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from safepassage.matcher.calibration import (
    CalibrationMethod,
    ImpostorScores,
    calibrate_with_probes,
    choose_sample,
    leave_one_out,
    searches_needed,
)
from safepassage.matcher.errors import CalibrationUnavailable, InvalidSearch
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.search import exact_search

HUNDREDTHS = (np.arange(1, 101) / 100).astype(np.float32)  # 0.01 .. 1.00


def shuffled(values: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(values)


def l2_scores(size: int = 1000) -> ImpostorScores:
    return calibrate_with_probes(shuffled(HUNDREDTHS), Metric.L2, size, calibrated_at=1.0)


def cosine_scores(size: int = 1000) -> ImpostorScores:
    # Similarities: the 5 highest are the 5 closest.
    return calibrate_with_probes(shuffled(HUNDREDTHS), Metric.COSINE, size, calibrated_at=1.0)


def matched(calibration: ImpostorScores, threshold: float) -> int:
    return int(calibration.metric.matches(calibration.scores, threshold).sum())


# --- construction -----------------------------------------------------------------------------


def test_scores_are_kept_sorted_closest_first_and_read_only() -> None:
    l2, cosine = l2_scores(), cosine_scores()
    assert l2.scores.dtype == np.float32 and list(l2.scores[:3]) == pytest.approx([0.01, 0.02, 0.03])
    assert list(cosine.scores[:3]) == pytest.approx([1.0, 0.99, 0.98])
    assert l2.searches == 100 and l2.gallery_size == 1000 and l2.method is CalibrationMethod.PROBES
    with pytest.raises(ValueError):
        l2.scores[0] = 5.0


def test_method_and_metric_given_as_strings_are_normalised() -> None:
    calibration = ImpostorScores("cosine", 10, np.array([0.5], np.float32), "leave_one_out", 2.0)  # type: ignore[arg-type]
    assert calibration.metric is Metric.COSINE and calibration.method is CalibrationMethod.LEAVE_ONE_OUT
    with pytest.raises(ValueError):
        ImpostorScores(Metric.L2, 10, np.array([0.5], np.float32), "guessed", 2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scores", "size", "message"),
    [
        (np.array([], np.float32), 10, "at least one impostor score"),
        (np.array([0.4, np.inf], np.float32), 10, "1 of 2 are not"),
        (np.array([0.4, np.nan], np.float32), 10, "must be finite"),
        (np.array([0.4], np.float32), 0, "positive whole number"),
        (np.array([0.4], np.float32), 2.5, "positive whole number"),
    ],
)
def test_invalid_calibrations_are_refused(scores: np.ndarray, size: int, message: str) -> None:
    with pytest.raises(InvalidSearch, match=message):
        calibrate_with_probes(scores, Metric.L2, size)


def test_probe_scores_must_be_one_per_search() -> None:
    with pytest.raises(InvalidSearch, match=r"1-D.*\(2, 2\)"):
        calibrate_with_probes(np.ones((2, 2), np.float32), Metric.L2, 10)


# --- threshold_for: the quantile --------------------------------------------------------------


def test_threshold_at_the_calibrated_size_is_halfway_past_the_allowed_scores() -> None:
    # 5% of 100 searches: the 5 closest may match; halfway between the 5th and the 6th.
    l2 = l2_scores()
    assert l2.threshold_for(0.05, 1000) == float(np.float32(0.055))
    assert matched(l2, l2.threshold_for(0.05, 1000)) == 5
    cosine = cosine_scores()
    assert cosine.threshold_for(0.05, 1000) == float(np.float32(0.955))
    assert matched(cosine, cosine.threshold_for(0.05, 1000)) == 5


def test_allowed_count_is_floored_and_survives_rounding() -> None:
    l2 = l2_scores()
    # 0.1 * 100 is 9.999... in floating point; it still allows 10.
    assert matched(l2, l2.threshold_for(0.1, 1000)) == 10
    assert matched(l2, l2.threshold_for(0.0599, 1000)) == 5
    assert matched(l2, l2.threshold_for(0.01, 1000)) == 1
    assert matched(l2, l2.threshold_for(0.99, 1000)) == 99


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
def test_exactly_the_allowed_searches_match_for_any_target(metric: Metric) -> None:
    rng = np.random.default_rng(7)
    scores = rng.uniform(0.2, 0.9, 997).astype(np.float32)
    assert len(np.unique(scores)) == len(scores)
    calibration = calibrate_with_probes(scores, metric, 500)
    for target in [0.0011, 0.003, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.998]:
        threshold = calibration.threshold_for(target, 500)
        assert matched(calibration, threshold) == math.floor(target * 997 + 1e-9), target
        # The same searches match when compared in float64.
        assert int(metric.matches(scores.astype(np.float64), threshold).sum()) == matched(
            calibration, threshold
        )


def test_threshold_for_adjacent_float32_scores_is_the_last_allowed_score() -> None:
    low = np.float32(0.5)
    high = np.nextafter(low, np.float32(1))
    calibration = calibrate_with_probes(np.array([high, low], np.float32), Metric.L2, 10)
    threshold = calibration.threshold_for(0.5, 10)
    assert threshold == float(low)
    assert matched(calibration, threshold) == 1


def test_ties_at_the_boundary_are_never_let_through() -> None:
    # 2 of 4 allowed, but the 2nd and 3rd tie: only the 1st can be let through alone.
    calibration = calibrate_with_probes(np.array([0.1, 0.2, 0.2, 0.3], np.float32), Metric.L2, 10)
    threshold = calibration.threshold_for(0.5, 10)
    assert threshold == float(np.float32(0.15)) and matched(calibration, threshold) == 1
    # The three closest tie: none can be let through.
    tied = calibrate_with_probes(np.array([0.1, 0.1, 0.1, 0.3], np.float32), Metric.L2, 10)
    assert matched(tied, tied.threshold_for(0.5, 10)) == 0
    tied_cosine = calibrate_with_probes(np.array([0.9, 0.9, 0.9, 0.3], np.float32), Metric.COSINE, 10)
    assert matched(tied_cosine, tied_cosine.threshold_for(0.5, 10)) == 0


# --- threshold_for: the size extrapolation ----------------------------------------------------


def test_a_larger_gallery_needs_a_stricter_quantile() -> None:
    l2 = l2_scores(size=1000)
    # At 4x the size: p = 1 - 0.8 ** (1/4) = 0.0543 -> 5 of 100 may match.
    assert pytest.approx(0.054258, abs=1e-6) == 1 - 0.8**0.25
    assert l2.threshold_for(0.2, 4000) == float(np.float32(0.055))
    # At a quarter of the size: p = 1 - 0.95 ** 4 = 0.1855 -> 18 of 100.
    assert l2.threshold_for(0.05, 250) == float(np.float32(0.185))
    cosine = cosine_scores(size=1000)
    assert cosine.threshold_for(0.2, 4000) == float(np.float32(0.955))
    assert matched(cosine, cosine.threshold_for(0.05, 250)) == 18


def test_fpir_at_extrapolates_the_measured_rate() -> None:
    l2 = l2_scores(size=1000)
    assert l2.fpir_at(0.055, 1000) == pytest.approx(0.05)
    assert l2.fpir_at(0.055, 2000) == pytest.approx(1 - 0.95**2)
    assert l2.fpir_at(0.055, 500) == pytest.approx(1 - 0.95**0.5)
    assert l2.fpir_at(0.0, 1000) == 0.0
    assert l2.fpir_at(5.0, 10) == 1.0 and l2.fpir_at(5.0, 100_000) == 1.0
    cosine = cosine_scores(size=1000)
    assert cosine.fpir_at(0.955, 2000) == pytest.approx(1 - 0.95**2)


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
@pytest.mark.parametrize("size", [10, 1000, 3000, 100_000])
def test_threshold_and_fpir_at_agree(metric: Metric, size: int) -> None:
    calibration = calibrate_with_probes(
        np.random.default_rng(3).uniform(0, 1, 5000).astype(np.float32), metric, 1000
    )
    for target in [0.01, 0.05, 0.2]:
        if calibration.searches_needed(target, size) > 5000:
            continue
        estimated = calibration.fpir_at(calibration.threshold_for(target, size), size)
        assert estimated <= target
        # One more matching search would have passed the target.
        p = 1 - (1 - target) ** (1000 / size)
        allowed = math.floor(p * 5000 + 1e-9)
        assert 1 - (1 - (allowed + 1) / 5000) ** (size / 1000) > target
        assert estimated == pytest.approx(1 - (1 - allowed / 5000) ** (size / 1000))


def test_extrapolation_holds_where_comparisons_are_independent() -> None:
    """Impostor comparisons drawn independently (the model's assumption): calibrating at 50
    templates and asking for 10% at 200 gives about 10% at 200 (20,000 searches each)."""
    rng = np.random.default_rng(11)
    searches = 20_000

    def best_of(size: int) -> np.ndarray:
        best: np.ndarray = rng.normal(0.8, 0.1, (searches, size)).astype(np.float32).min(axis=1)
        return best

    calibration = calibrate_with_probes(best_of(50), Metric.L2, 50)
    threshold = calibration.threshold_for(0.1, 200)
    measured = float((best_of(200) <= threshold).mean())
    assert measured == pytest.approx(0.1, rel=0.1)


# --- threshold_for: errors --------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf"), "abc", None])
def test_target_must_be_strictly_between_0_and_1(target: float) -> None:
    with pytest.raises(InvalidSearch, match="strictly between 0 and 1"):
        l2_scores().threshold_for(target, 1000)


@pytest.mark.parametrize("size", [0, -5, 1.5, float("inf"), "ten", True])
def test_gallery_size_must_be_positive(size: int) -> None:
    with pytest.raises(InvalidSearch, match="gallery size must be a positive whole number"):
        l2_scores().threshold_for(0.1, size)
    with pytest.raises(InvalidSearch, match="gallery size must be a positive whole number"):
        l2_scores().fpir_at(0.5, size)


def test_fpir_at_needs_a_finite_threshold() -> None:
    with pytest.raises(InvalidSearch, match="finite"):
        l2_scores().fpir_at(float("nan"), 10)
    with pytest.raises(InvalidSearch, match="finite"):
        l2_scores().fpir_at("close", 10)  # type: ignore[arg-type]


def test_a_target_below_the_resolution_says_how_many_searches_it_needs() -> None:
    l2 = l2_scores(size=1000)
    with pytest.raises(CalibrationUnavailable, match=r"at least 200 impostor searches.*has 100"):
        l2.threshold_for(0.005, 1000)
    # 1% at 100x the size: p = 1 - 0.99 ** 0.01 = 1.00498e-4, so 9951 searches.
    assert pytest.approx(9950.42, abs=0.01) == 1 / (1 - 0.99**0.01)
    with pytest.raises(CalibrationUnavailable, match=r"at least 9951 impostor searches \(run at size 1000\)"):
        l2.threshold_for(0.01, 100_000)
    assert searches_needed(0.01, 1000, 100_000) == 9951
    assert searches_needed(0.1, 1000, 1000) == 10  # not 11: 1 / 0.1 is not rounded up past 10
    assert l2.searches_needed(0.05, 1000) == 20


def test_a_target_that_lets_every_search_match_is_refused() -> None:
    # 50% at a hundredth of the size: p = 1 - 0.5 ** 100, 1.0 in floating point: all 100 would match.
    with pytest.raises(CalibrationUnavailable, match="lets all 100 calibration searches"):
        l2_scores(size=1000).threshold_for(0.5, 10)
    # 10% there: p = 1 - 0.9 ** 100 = 0.99997, so 99 of 100 match and the threshold is still bounded.
    assert matched(l2_scores(size=1000), l2_scores(size=1000).threshold_for(0.1, 10)) == 99


# --- bytes for the store ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
def test_bytes_round_trip(metric: Metric) -> None:
    original = ImpostorScores(metric, 321, shuffled(HUNDREDTHS), CalibrationMethod.LEAVE_ONE_OUT, 1234.5)
    again = ImpostorScores.from_bytes(original.to_bytes())
    assert again == original
    assert again.threshold_for(0.05, 999) == original.threshold_for(0.05, 999)
    assert original != ImpostorScores(metric, 322, HUNDREDTHS, CalibrationMethod.LEAVE_ONE_OUT, 1234.5)


def test_corrupt_bytes_are_refused_with_a_reason() -> None:
    data = l2_scores().to_bytes()
    with pytest.raises(ValueError, match="too short"):
        ImpostorScores.from_bytes(data[:5])
    with pytest.raises(ValueError, match="bad magic"):
        ImpostorScores.from_bytes(b"X" + data[1:])
    with pytest.raises(ValueError, match="version 2 is not supported"):
        ImpostorScores.from_bytes(data[:8] + struct.pack("<H", 2) + data[10:])
    with pytest.raises(ValueError, match="should hold 100 scores"):
        ImpostorScores.from_bytes(data[:-4])
    with pytest.raises(ValueError, match="claims"):
        ImpostorScores.from_bytes(data[:20])
    (length,) = struct.unpack_from("<I", data, 10)
    garbage = b"{" * length
    with pytest.raises(ValueError, match="header is unreadable"):
        ImpostorScores.from_bytes(data[:14] + garbage + data[14 + length :])
    nan_body = data[:-4] + np.array([np.nan], "<f4").tobytes()
    with pytest.raises(ValueError, match="content is invalid"):
        ImpostorScores.from_bytes(nan_body)


# --- leave-one-out ----------------------------------------------------------------------------


def gallery(metric: Metric, count: int = 300, seed: int = 5) -> tuple[FlatIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 1, (count, 16)).astype(np.float32)
    if metric is Metric.COSINE:
        vectors = normalise_rows(vectors)
    ids = rng.permutation(np.arange(1000, 1000 + 3 * count, 3, dtype=np.int64))
    index = FlatIndex(16, metric)
    index.add(ids, vectors)
    return index, ids, vectors


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
def test_leave_one_out_scores_each_sample_against_the_others(metric: Metric) -> None:
    index, ids, vectors = gallery(metric)
    sample = choose_sample(ids, 120, seed=1)
    calibration = leave_one_out(index, sample)
    assert calibration.method is CalibrationMethod.LEAVE_ONE_OUT
    assert calibration.gallery_size == 299 and calibration.searches == 120
    expected = []
    for template_id in sample:
        others = ids != template_id
        row = vectors[ids == template_id]
        expected.append(exact_search(vectors[others], ids[others], row, 1, metric).scores[0, 0])
    reference = ImpostorScores(metric, 299, np.array(expected), CalibrationMethod.LEAVE_ONE_OUT, 0.0)
    np.testing.assert_allclose(calibration.scores, reference.scores, atol=1e-5)
    # Given the vectors instead of looking them up: the same scores.
    rows = np.stack([vectors[ids == i][0] for i in sample])
    np.testing.assert_array_equal(leave_one_out(index, sample, rows).scores, calibration.scores)


def test_leave_one_out_skips_itself_even_behind_a_duplicate() -> None:
    index, ids, vectors = gallery(Metric.L2, count=20)
    twin_id = np.int64(5)
    index.add(np.array([twin_id]), vectors[:1])  # the same vector again, under another id
    calibration = leave_one_out(index, ids[:1])
    assert calibration.scores[0] == 0.0  # the twin, whichever of the two FAISS put first
    twin = leave_one_out(index, np.array([twin_id]))
    assert twin.scores[0] == 0.0


def test_leave_one_out_refusals() -> None:
    index, ids, _ = gallery(Metric.L2, count=10)
    with pytest.raises(InvalidSearch, match=r"not all in the gallery's index \(key 7 not found\)"):
        leave_one_out(index, np.array([ids[0], 7]))
    with pytest.raises(InvalidSearch, match="distinct"):
        leave_one_out(index, np.array([ids[0], ids[0]]))
    with pytest.raises(InvalidSearch, match="at least one"):
        leave_one_out(index, np.array([], np.int64))
    with pytest.raises(
        InvalidSearch, match=r"expected 2 sampled vectors of dimension 16; got shape \(2, 8\)"
    ):
        leave_one_out(index, ids[:2], np.zeros((2, 8), np.float32))
    lonely = FlatIndex(16, Metric.L2)
    lonely.add(np.array([1]), np.ones((1, 16), np.float32))
    with pytest.raises(CalibrationUnavailable, match=r"at least 2 templates.*has 1"):
        leave_one_out(lonely, np.array([1]))


def test_choose_sample_is_seeded_and_distinct() -> None:
    ids = np.arange(100, 200, dtype=np.int64)
    first, again = choose_sample(ids, 30, seed=4), choose_sample(ids, 30, seed=4)
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first)) == 30 and set(first) <= set(ids)
    np.testing.assert_array_equal(choose_sample(ids, 500), ids)
    with pytest.raises(InvalidSearch):
        choose_sample(ids, 0)


class ContentsOnly:
    """A VectorIndex with no `vectors_of` (as an external backend may be): leave-one-out reads contents()."""

    def __init__(self, inner: FlatIndex) -> None:
        self.inner = inner
        self.metric = inner.metric
        self.dimension = inner.dimension

    @property
    def size(self) -> int:
        return self.inner.size

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        return self.inner.remove(ids)

    def search(self, probes: np.ndarray, k: int, subset: np.ndarray | None = None):  # type: ignore[no-untyped-def]
        return self.inner.search(probes, k, subset)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.contents()

    def to_bytes(self) -> bytes:
        return self.inner.to_bytes()


def test_leave_one_out_reads_the_contents_of_an_index_without_vectors_of() -> None:
    index, ids, _ = gallery(Metric.COSINE, count=50)
    sample = choose_sample(ids, 20, seed=2)
    plain = ContentsOnly(index)
    assert not hasattr(plain, "vectors_of")
    np.testing.assert_array_equal(leave_one_out(plain, sample).scores, leave_one_out(index, sample).scores)
    with pytest.raises(InvalidSearch, match=r"not all in the gallery's index \(1 missing, e.g. 7\)"):
        leave_one_out(plain, np.array([ids[0], 7]))
