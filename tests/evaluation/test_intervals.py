"""The interval arithmetic on cases with known answers (closed forms and published tables)."""

from __future__ import annotations

import math

import pytest

from safepassage.evaluation.intervals import (
    MIN_EXPECTED_ERRORS,
    Rate,
    beta_quantile,
    cite,
    clopper_pearson,
    describe,
    percent,
    regularized_beta,
    rule_of_three,
    supported,
)


def test_clopper_pearson_matches_its_closed_forms_at_the_edges() -> None:
    # k = 0: the upper bound solves (1 - p)^n = 0.025; k = n: the lower bound solves p^n = 0.025.
    for n in (1, 4, 43, 990, 1_569_495):
        low, high = clopper_pearson(0, n)
        assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / n))
        low, high = clopper_pearson(n, n)
        assert low == pytest.approx(0.025 ** (1 / n)) and high == 1.0
    # k = 1: the lower bound solves 1 - (1 - p)^n = 0.025.
    assert clopper_pearson(1, 346)[0] == pytest.approx(1 - 0.975 ** (1 / 346), rel=1e-9)


def test_clopper_pearson_matches_published_values() -> None:
    # 5 of 10: (0.1871, 0.8129); 1 of 10: (0.0025, 0.4450); 10 of 100: (0.0490, 0.1762).
    assert clopper_pearson(5, 10) == pytest.approx((0.18709, 0.81291), abs=5e-5)
    assert clopper_pearson(1, 10) == pytest.approx((0.00253, 0.44502), abs=5e-5)
    assert clopper_pearson(10, 100) == pytest.approx((0.04900, 0.17622), abs=5e-5)


def test_clopper_pearson_is_symmetric_and_holds_the_rate() -> None:
    for k, n in ((3, 346), (437, 939), (15_695, 1_569_495), (157, 1_569_495)):
        low, high = clopper_pearson(k, n)
        assert low < k / n < high
        mirrored = clopper_pearson(n - k, n)
        assert mirrored == pytest.approx((1 - high, 1 - low), rel=1e-7, abs=1e-12)
    # Large n: close to the normal approximation.
    low, high = clopper_pearson(15_695, 1_569_495)
    half = 1.96 * math.sqrt(0.01 * 0.99 / 1_569_495)
    assert (low, high) == pytest.approx((0.01 - half, 0.01 + half), rel=2e-3)


def test_the_beta_quantile_inverts_the_beta_cdf() -> None:
    for p, a, b in ((0.025, 3, 344), (0.975, 4, 343), (0.5, 2.5, 7.0), (0.975, 158, 1_569_338)):
        assert regularized_beta(beta_quantile(p, a, b), a, b) == pytest.approx(p, abs=1e-9)
    assert regularized_beta(0.3, 1, 1) == pytest.approx(0.3)  # the uniform distribution


def test_rule_of_three_is_about_three_over_n() -> None:
    assert rule_of_three(990) == pytest.approx(1 - 0.05 ** (1 / 990))
    assert rule_of_three(990) == pytest.approx(3 / 990, rel=0.01)
    assert rule_of_three(43) == pytest.approx(0.0673, abs=1e-4)  # 43 source images: under 7 %


def test_a_point_is_supported_from_ten_expected_errors() -> None:
    assert MIN_EXPECTED_ERRORS == 10
    assert supported(1000, 0.01) and not supported(999, 0.01)
    assert supported(3334, 0.003)  # 0.003 * 3334 = 10.002
    assert not supported(346, 0.01) and not supported(346, 0.003)  # 3.46 and 1.04 false positives
    assert supported(1_569_495, 1e-4)


def test_a_rate_carries_its_count_unit_and_interval() -> None:
    seen = Rate(3, 346, "non-mated searches, one person each").as_dict()
    assert (seen["k"], seen["n"], seen["upper_bound_95"]) == (3, 346, None)
    assert seen["ci95"] == list(clopper_pearson(3, 346))
    none = Rate(0, 990, "attack presentations").as_dict()
    assert none["upper_bound_95"] == pytest.approx(rule_of_three(990))
    with pytest.raises(ValueError):
        Rate(5, 4, "trials")


def test_readme_wording() -> None:
    assert describe(0, 990) == "0 of 990, < 0.30 %"
    assert describe(3, 346) == "3 of 346, 95 % CI 0.18-2.5 %"
    assert describe(1164, 1180) == "1,164 of 1,180, 95 % CI 97.8-99.2 %"
    assert cite(1164, 1180) == "98.6 % (1,164 of 1,180, 95 % CI 97.8-99.2 %)"
    assert cite(0, 43) == "0 % (0 of 43, < 6.7 %)"
    assert [percent(x) for x in (0.0, 0.00017, 0.003, 0.025, 0.986)] == ["0", "0.017", "0.30", "2.5", "98.6"]
