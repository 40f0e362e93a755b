"""How far a measured error rate can be trusted: its count, a 95 % interval, and whether it is supported.

Every rate the project publishes is k errors of n trials of a stated unit (people, searches, source
images, turns). This module holds the arithmetic, and nothing else:

- `clopper_pearson(k, n)`: the exact two-sided 95 % binomial interval (Clopper & Pearson, 1934), from
  the beta quantiles B(0.025; k, n - k + 1) and B(0.975; k + 1, n - k). It never undercovers; it
  assumes the n trials are independent, so it is only as good as the unit of independence stated with
  it (1.5 million impostor comparisons among 835 people are not 1.5 million independent trials).
- `rule_of_three(n)`: with no error in n independent trials, the one-sided 95 % upper bound on the
  rate is about 3 / n (exactly 1 - 0.05^(1/n); ISO/IEC 19795-1). Where k = 0 this is the figure to quote.
- The support rule (`supported`, `MIN_EXPECTED_ERRORS`): an operating point "at rate x" rests on the
  errors its threshold lets through; with n trials that is about n * x of them. A point is supported
  when n * x >= 10: ten errors put the relative standard error of the rate near 1 / sqrt(10), about
  30 %. Below that the threshold is set by a handful of errors (FPIR 0.003 on 346 searches lets one
  through), so the point is reported with its count and interval and marked not supported, never as
  a validated rate.

Pure Python (math only): the README-figure check recomputes intervals from saved counts in its fast
test, so this module must not need numpy or scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95
MIN_EXPECTED_ERRORS = 10
# Counts are compared against target * n; 0.003 * 1000 must allow 3, though it is 2.9999999999999996.
_COUNT_SLACK = 1e-9


def _check(k: int, n: int) -> None:
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0; got k={k}, n={n}")


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 200_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-14:
            return result
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the beta distribution's CDF at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    # The fraction converges fast on the side of the distribution's mean that x lies on.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = p, by bisection on a log scale near 0 (rates of 1e-6 resolve exactly)."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = math.sqrt(low * high) if low > 0.0 and high < 1e-3 else 0.5 * (low + high)
        if middle <= low or middle >= high:
            break
        if regularized_beta(middle, a, b) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval for a binomial rate of k in n."""
    _check(k, n)
    tail = (1.0 - confidence) / 2.0
    if k == 0:
        low = 0.0
    elif k == n:
        low = math.pow(tail, 1.0 / n)
    else:
        low = beta_quantile(tail, k, n - k + 1)
    if k == n:
        high = 1.0
    elif k == 0:
        high = 1.0 - math.pow(tail, 1.0 / n)
    else:
        high = beta_quantile(1.0 - tail, k + 1, n - k)
    return low, high


def rule_of_three(n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided upper bound on a rate with no error in n trials: 1 - (1 - confidence)^(1/n) ~ 3/n."""
    _check(0, n)
    return 1.0 - math.pow(1.0 - confidence, 1.0 / n)


def expected_errors(trials: int, target: float) -> float:
    return trials * target


def supported(trials: int, target: float) -> bool:
    """Whether `trials` can support an operating point at rate `target` (the rule in the docstring)."""
    return trials * target + _COUNT_SLACK >= MIN_EXPECTED_ERRORS


@dataclass(frozen=True)
class Rate:
    """k of n trials, with the unit one trial is, and the 95 % interval of k / n."""

    k: int
    n: int
    unit: str

    def __post_init__(self) -> None:
        _check(self.k, self.n)

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.k, self.n)

    @property
    def upper_bound_95(self) -> float | None:
        """The rule-of-three bound, the figure to quote where no error was seen; None otherwise."""
        return rule_of_three(self.n) if self.k == 0 else None

    def as_dict(self) -> dict[str, object]:
        low, high = self.interval
        return {
            "k": self.k,
            "n": self.n,
            "unit": self.unit,
            "rate": self.rate,
            "ci95": [low, high],
            "upper_bound_95": self.upper_bound_95,
        }


def percent(value: float) -> str:
    """A rate in percent: one decimal from 1 % up (98.6, 2.5), two significant digits below (0.30, 0.017)."""
    shown = 100.0 * value
    if shown == 0.0:
        return "0"
    if shown >= 1.0:
        return f"{shown:.1f}"
    return f"{shown:.{1 - math.floor(math.log10(shown))}f}"


def describe(k: int, n: int) -> str:
    """The README wording of k of n: '0 of 990, < 0.30 %' or '3 of 346, 95 % CI 0.18-2.5 %'."""
    if k == 0:
        return f"0 of {n:,}, < {percent(rule_of_three(n))} %"
    low, high = clopper_pearson(k, n)
    return f"{k:,} of {n:,}, 95 % CI {percent(low)}-{percent(high)} %"


def cite(k: int, n: int) -> str:
    """A rate as the READMEs and the report print it: '98.6 % (1,164 of 1,180, 95 % CI 97.8-99.2 %)',
    or with no error '0 % (0 of 990, < 0.30 %)'."""
    return f"{percent(k / n)} % ({describe(k, n)})"
