"""The values of a kept CCTV hit's review: its states, each review, what the queue shows, and the refusals.

The four-eyes rule itself is the probe store's (safepassage/store/probes.py), in one transaction per
review; these are the plain values it returns and the errors it raises, each under one category.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from safepassage.core.errors import FailedPrecondition, NotFound, PermissionDenied
from safepassage.store.errors import StoreError

__all__ = [
    "HitEvidence",
    "HitState",
    "KeptProbe",
    "ProbeAlreadyConfirmed",
    "ProbeDismissed",
    "ProbeNotFound",
    "ProbeReview",
    "QueuedHit",
    "ReviewAction",
    "SameReviewer",
]


class ProbeNotFound(StoreError, NotFound):
    """No kept probe has that id in that gallery (never kept, kept for another gallery, or purged)."""


class ProbeAlreadyConfirmed(StoreError, FailedPrecondition):
    """The hit was confirmed (by two reviewers); their confirmation stands."""


class ProbeDismissed(StoreError, FailedPrecondition):
    """The hit was dismissed and its probe erased; nobody can act on it again."""


class SameReviewer(StoreError, PermissionDenied):
    """Four eyes: a reviewer who decided on a hit may not decide on it again, nor complete their own."""


class ReviewAction(enum.StrEnum):
    CONFIRM = "confirm"
    DISMISS = "dismiss"


class HitState(enum.StrEnum):
    """Where a kept hit stands in its four-eyes review."""

    AWAITING_REVIEW = "awaiting_review"  # nobody has confirmed it yet
    AWAITING_SECOND_REVIEW = "awaiting_second_review"  # one reviewer confirmed; another must
    CONFIRMED = "confirmed"  # two different reviewers confirmed: kept as evidence
    DISMISSED = "dismissed"  # a reviewer dismissed it: the probe is erased


@dataclass(frozen=True)
class KeptProbe:
    probe_id: int
    gallery_id: str
    camera_id: str
    captured_at: float
    candidate: str
    confirmed: bool
    authorisation_id: str = ""  # the CCTV authorisation that admitted the search ("" before version 2)
    confirmed_by: str = ""  # the label of the reviewer whose confirmation completed the four eyes
    confirmed_at: float | None = None


@dataclass(frozen=True)
class HitEvidence:
    """What the search that kept a hit showed: recorded from version 3 on (None / "" before)."""

    score: float | None = None
    threshold: float | None = None
    legal_basis: str = ""  # the CCTV authorisation's
    authorisation_expires: float | None = None
    has_face_crop: bool = False  # the camera sent a face crop (`face_crop` reads it)


@dataclass(frozen=True)
class ProbeReview:
    """One review attempt: accepted (it counts) or refused (the same reviewer again, or already decided)."""

    reviewed_at: float
    reviewed_by: str
    accepted: bool
    action: ReviewAction = ReviewAction.CONFIRM


@dataclass(frozen=True)
class QueuedHit:
    """A kept hit as its reviewers see it: the probe, the search's evidence, the reviews so far."""

    probe: KeptProbe
    evidence: HitEvidence
    reviews: tuple[ProbeReview, ...]

    @property
    def state(self) -> HitState:
        if self.probe.confirmed:
            return HitState.CONFIRMED
        if any(r.accepted and r.action is ReviewAction.CONFIRM for r in self.reviews):
            return HitState.AWAITING_SECOND_REVIEW
        return HitState.AWAITING_REVIEW
