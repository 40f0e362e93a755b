"""Domain values of the matcher: galleries and search results.

The matcher knows reference ids and vectors only, never people (as an ABIS
does): results name reference ids, which the caller resolves.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from matcher.errors import InvalidSearch
from matcher.metric import Metric


class GalleryPurpose(enum.StrEnum):
    """What a gallery may be used for; access rules per purpose come later."""

    WATCHLIST = "watchlist"
    PROTECTED_IDENTITY = "protected_identity"


@dataclass(frozen=True)
class GallerySpec:
    gallery_id: str
    purpose: GalleryPurpose
    model_name: str
    dimension: int
    metric: Metric
    threshold: float


@dataclass(frozen=True)
class GalleryInfo:
    spec: GallerySpec
    size: int
    created_at: float


@dataclass(frozen=True)
class Candidate:
    reference_id: str
    score: float
    rank: int
    match: bool


@dataclass(frozen=True)
class Identification:
    """The answer for one probe: candidates closest first, and the decision."""

    candidates: tuple[Candidate, ...]
    metric: Metric
    threshold: float

    @property
    def match(self) -> bool:
        return any(c.match for c in self.candidates)


@dataclass(frozen=True)
class Verification:
    score: float
    metric: Metric
    threshold: float

    @property
    def match(self) -> bool:
        return self.metric.is_match(self.score, self.threshold)


def check_threshold(threshold: float, metric: Metric) -> float:
    """A threshold that the metric can meet: finite, >= 0 for L2, in [-1, 1] for cosine."""
    if not math.isfinite(threshold):
        raise InvalidSearch("threshold must be a finite number")
    if metric is Metric.L2 and threshold < 0:
        raise InvalidSearch(f"threshold {threshold:g} is negative; L2 distances are >= 0")
    if metric is Metric.COSINE and not -1.0 <= threshold <= 1.0:
        raise InvalidSearch(f"threshold {threshold:g} is outside [-1, 1], the range of cosine similarity")
    return threshold
