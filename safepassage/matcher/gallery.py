"""Domain values of the matcher: galleries and search results.

The matcher knows reference ids and vectors only, never people (as an ABIS
does): results name reference ids, which the caller resolves.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from safepassage.matcher.errors import InvalidSearch
from safepassage.matcher.metric import Metric


class GalleryPurpose(enum.StrEnum):
    """What a gallery may be used for; access rules per purpose come later."""

    WATCHLIST = "watchlist"
    PROTECTED_IDENTITY = "protected_identity"


class ThresholdSource(enum.StrEnum):
    """Where an identification's threshold came from."""

    GALLERY = "gallery"  # the gallery's fixed threshold
    REQUEST = "request"  # the caller's threshold
    TARGET_FPIR = "target_fpir"  # a target FPIR through the gallery's calibration


class ThresholdOrigin(enum.StrEnum):
    """Where a gallery's own threshold came from (what its searches use unless a request says)."""

    MODEL_DEFAULT = "model 1:1 default"
    WATCHLIST_DEFAULT = "watchlist default"
    CALIBRATED = "calibration at target FPIR"
    SET_BY_ADMIN = "set by admin"


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold a search uses, and why."""

    value: float
    source: ThresholdSource
    target_fpir: float | None = None


@dataclass(frozen=True)
class GallerySpec:
    gallery_id: str
    purpose: GalleryPurpose
    model_name: str
    dimension: int
    metric: Metric
    threshold: float
    # Set: the threshold follows this FPIR at the gallery's current size (from its calibration).
    target_fpir: float | None = None
    # Version of the template-protection key its templates are transformed with; None: plain.
    protection_version: int | None = None


@dataclass(frozen=True)
class CalibrationSummary:
    impostor_searches: int
    gallery_size: int
    method: str
    calibrated_at: float
    # FPIR of the gallery's threshold at its present size, from these impostor scores.
    fpir: float | None = None


@dataclass(frozen=True)
class GalleryInfo:
    spec: GallerySpec
    size: int
    created_at: float
    index_kind: str = "flat"
    index_recall: float = 1.0
    calibration: CalibrationSummary | None = None
    # Stored rows kept out of the index (store.quarantine): beyond the model's bounds, or unreadable.
    quarantined: int = 0
    # Background index builds that failed since start-up (the previous index stayed in use).
    index_build_failures: int = 0
    # Faces in the gallery's background cohort (0: scores are not normalised).
    background_cohort: int = 0


def passes(metric: Metric, threshold: float, score: float, normalised_score: float | None) -> bool:
    """Whether a score meets a threshold: the normalised score where the gallery normalises (a ratio,
    lower is closer), else the score in the metric's own direction."""
    if normalised_score is not None:
        return normalised_score <= threshold
    return metric.is_match(score, threshold)


@dataclass(frozen=True)
class Candidate:
    reference_id: str
    score: float  # in the metric's units
    rank: int
    match: bool
    # Where the gallery has a background cohort: score over the probe's cohort scale, the number
    # the threshold applies to (a ratio, lower is closer).
    normalised_score: float | None = None


@dataclass(frozen=True)
class Identification:
    """The answer for one probe: candidates closest first, and the decision."""

    candidates: tuple[Candidate, ...]
    metric: Metric
    threshold: float
    threshold_source: ThresholdSource = ThresholdSource.GALLERY
    target_fpir: float | None = None

    @property
    def match(self) -> bool:
        return any(c.match for c in self.candidates)


@dataclass(frozen=True)
class Verification:
    score: float
    metric: Metric
    threshold: float
    normalised_score: float | None = None  # as Candidate.normalised_score

    @property
    def match(self) -> bool:
        return passes(self.metric, self.threshold, self.score, self.normalised_score)


def check_threshold(threshold: float, metric: Metric) -> float:
    """A threshold that the metric can meet: finite, >= 0 for L2, in [-1, 1] for cosine."""
    if not math.isfinite(threshold):
        raise InvalidSearch("threshold must be a finite number")
    if metric is Metric.L2 and threshold < 0:
        raise InvalidSearch(f"threshold {threshold:g} is negative; L2 distances are >= 0")
    if metric is Metric.COSINE and not -1.0 <= threshold <= 1.0:
        raise InvalidSearch(f"threshold {threshold:g} is outside [-1, 1], the range of cosine similarity")
    return threshold
