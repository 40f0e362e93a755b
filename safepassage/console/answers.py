"""The plain values the pages show: who the person is, a search's answer, and what its threshold means.

The gateway makes these from the service's answers; pages read them and nothing else. The threshold
story is the officer's: the threshold in force, where it came from, and, where the service knows
the false positive identification rate (FPIR) that threshold implies for the gallery, one line in
plain words ("about 1 in N strangers would be flagged"). A 1:1 check or a 1:few list compares
fewer references than the gallery holds; their rate is derived from the gallery's by assuming
independent impostor comparisons (as the service's calibration extrapolates across sizes), and the
page says it is an estimate.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "Candidate",
    "FaceAnswer",
    "GalleryThreshold",
    "Person",
    "SearchAnswer",
    "SearchKind",
    "strangers_per_false_alarm",
]


class SearchKind(enum.StrEnum):
    VERIFY = "verify"  # 1:1 against one reference id
    IDENTIFY = "identify"  # 1:N over the gallery
    FEW = "few"  # 1:few over a list of reference ids (a manifest)


@dataclass(frozen=True)
class Person:
    """The person the service authenticated (their certificate), and what their role may call."""

    client_id: str
    role: str
    organisation: str
    serial: str
    via: str
    # Operation -> the gallery purposes it may act on ("watchlist", ...; empty: names no gallery).
    permissions: tuple[tuple[str, frozenset[str]], ...]

    def may(self, operation: str) -> bool:
        return any(name == operation for name, _ in self.permissions)


@dataclass(frozen=True)
class Candidate:
    rank: int
    reference_id: str
    score: float
    match: bool
    # Where the gallery normalises scores by a background cohort: the ratio the threshold applies to.
    normalised_score: float | None = None


@dataclass(frozen=True)
class FaceAnswer:
    box: tuple[int, int, int, int] | None  # left, top, right, bottom in the uploaded image
    decision: str  # "MATCH" or "NO_MATCH"
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class SearchAnswer:
    kind: SearchKind
    gallery_id: str
    decision: str  # "MATCH" when any face matched, else "NO_MATCH"
    threshold: float
    metric: str  # "L2" (a distance: lower is closer) or "COSINE" (a similarity)
    threshold_source: str  # GALLERY_THRESHOLD, TARGET_FPIR or REQUEST_THRESHOLD ("" for a 1:1)
    gallery_threshold_origin: str  # CALIBRATED, WATCHLIST_DEFAULT, ... ("" when not said)
    target_fpir: float | None
    faces: tuple[FaceAnswer, ...]
    compared: int  # references the probe was compared with: 1, the list's length, or 0 (the gallery)

    @property
    def matched(self) -> bool:
        return self.decision == "MATCH"

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(candidate for face in self.faces for candidate in face.candidates)

    @property
    def normalised(self) -> bool:
        """Whether the threshold applies to normalised scores (a gallery with a background cohort)."""
        return any(candidate.normalised_score is not None for candidate in self.candidates)


@dataclass(frozen=True)
class GalleryThreshold:
    """What DescribeGallery says of a gallery's own threshold."""

    gallery_id: str
    size: int
    threshold: float
    metric: str
    origin: str  # MODEL_DEFAULT, WATCHLIST_DEFAULT, CALIBRATED, SET_BY_ADMIN
    target_fpir: float | None
    implied_fpir: float | None  # at this threshold and the gallery's size, where known
    implied_fpir_basis: str  # "calibration" or "model evidence"
    keeps_reference_images: bool = False


def same_threshold(a: float, b: float) -> bool:
    """Equal at the API's float32 precision."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def strangers_per_false_alarm(gallery: GalleryThreshold, answer: SearchAnswer) -> int | None:
    """About how many strangers' searches like this one give one false alarm; None when unknown.

    Known only when the answer used the gallery's own threshold and the gallery's implied FPIR is
    known. A search over k of the gallery's N references: 1 - (1 - FPIR_N) ** (k / N).
    """
    rate = gallery.implied_fpir
    if rate is None or not 0 < rate < 1 or gallery.size <= 0:
        return None
    if not same_threshold(answer.threshold, gallery.threshold):
        return None
    compared = answer.compared or gallery.size
    fraction = min(compared, gallery.size) / gallery.size
    per_search = -math.expm1(fraction * math.log1p(-rate))
    if per_search <= 0:
        return None
    return max(1, round(1 / per_search))
