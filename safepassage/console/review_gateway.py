"""The reviewer's calls to the service: the queue of kept CCTV hits, and confirming or dismissing one.

Each is the person's own call over the console's loopback channel (gateway.py), decided by the
service's matrix (who may ConfirmMatch may review) and logged under the person; the four-eyes rule
is the service's (the probe store's), never this module's. Protobuf types stop here: pages get the
plain values below, times as seconds since the epoch, a reference image as a data: URL (the page's
Content-Security-Policy allows images inside the page only), held for the response only.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console.gateway import ServiceGateway
from safepassage.console.refusals import NothingThere

__all__ = ["HitReview", "HitState", "KeptHit", "ReviewAction", "ReviewGateway", "ReviewQueue"]


class HitState(enum.StrEnum):
    AWAITING_REVIEW = "AWAITING_REVIEW"
    AWAITING_SECOND_REVIEW = "AWAITING_SECOND_REVIEW"
    CONFIRMED = "CONFIRMED"
    DISMISSED = "DISMISSED"


class ReviewAction(enum.StrEnum):
    CONFIRM = "confirm"
    DISMISS = "dismiss"


@dataclass(frozen=True)
class HitReview:
    reviewer: str  # "role:client id", as the reviewer's certificate names them
    action: ReviewAction
    reviewed_at: float


@dataclass(frozen=True)
class KeptHit:
    probe_id: int
    camera_id: str
    kept_at: float
    purge_at: float | None  # None once confirmed
    authorisation_id: str
    legal_basis: str
    authorisation_expires: float | None
    reference_id: str
    score: float | None
    threshold: float | None
    state: HitState
    reviews: tuple[HitReview, ...]
    has_face_crop: bool = False  # the camera sent its face with the hit
    face_crop: str | None = None  # that face as a data: URL, where asked for (one hit's page)

    def reviewed_by(self, reviewer: str) -> bool:
        return any(review.reviewer == reviewer for review in self.reviews)


@dataclass(frozen=True)
class ReviewQueue:
    gallery_id: str
    camera_id: str  # "" : every camera
    metric: str  # L2 or COSINE
    retention_hours: float
    hits: tuple[KeptHit, ...]


_ACTIONS = {pb.HIT_CONFIRM: ReviewAction.CONFIRM, pb.HIT_DISMISS: ReviewAction.DISMISS}


def _data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _hit(shown: pb.KeptHit) -> KeptHit:
    return KeptHit(
        probe_id=shown.probe_id,
        camera_id=shown.camera_id,
        kept_at=shown.kept_at.ToNanoseconds() / 1e9,
        purge_at=shown.purge_at.ToNanoseconds() / 1e9 if shown.HasField("purge_at") else None,
        authorisation_id=shown.authorisation_id,
        legal_basis=shown.legal_basis,
        authorisation_expires=(
            shown.authorisation_expires.ToSeconds() if shown.HasField("authorisation_expires") else None
        ),
        reference_id=shown.reference_id,
        score=shown.score if shown.HasField("score") else None,
        threshold=shown.threshold if shown.HasField("threshold") else None,
        state=HitState(pb.HitState.Name(shown.state)),
        reviews=tuple(
            HitReview(r.reviewer, _ACTIONS[r.action], r.reviewed_at.ToNanoseconds() / 1e9)
            for r in shown.reviews
            if r.action in _ACTIONS
        ),
        has_face_crop=shown.has_face_crop,
        face_crop=_data_url(shown.face_crop) if shown.face_crop else None,
    )


class ReviewGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._matching = pb_grpc.MatchingServiceStub(gateway.channel)

    def queue(self, person: bytes, gallery_id: str, camera_id: str = "", probe_id: int = 0) -> ReviewQueue:
        request = pb.ListKeptHitsRequest(
            gallery_id=gallery_id, camera_id=camera_id, probe_id=probe_id, include_face_crops=bool(probe_id)
        )
        answer = self._gateway.call(self._matching.ListKeptHits, request, person)
        return ReviewQueue(
            gallery_id=gallery_id,
            camera_id=camera_id,
            metric=pb.Metric.Name(answer.metric),
            retention_hours=answer.retention_hours,
            hits=tuple(_hit(hit) for hit in answer.hits),
        )

    def hit(self, person: bytes, gallery_id: str, probe_id: int) -> tuple[ReviewQueue, KeptHit]:
        """The one hit, with the camera's face crop if it sent one (NothingThere when it is not kept)."""
        queue = self.queue(person, gallery_id, probe_id=probe_id)
        found = next((hit for hit in queue.hits if hit.probe_id == probe_id), None)
        if found is None:
            raise NothingThere(
                f"probe {probe_id} is not kept in {gallery_id} (dismissed, purged or never a hit)"
            )
        return queue, found

    def reference_image(self, person: bytes, gallery_id: str, reference_id: str) -> str | None:
        """The gallery's reference image of the subject as a data: URL, None when it keeps none."""
        request = pb.GetReferenceImageRequest(gallery_id=gallery_id, reference_id=reference_id)
        try:
            answer = self._gateway.call(self._matching.GetReferenceImage, request, person)
        except NothingThere:
            return None
        return _data_url(answer.jpeg)

    def decide(self, person: bytes, gallery_id: str, probe_id: int, action: ReviewAction) -> HitState:
        """Confirm or dismiss as the person; the hit's state after it (the service refuses the rest)."""
        if action is ReviewAction.CONFIRM:
            request = pb.ConfirmMatchRequest(gallery_id=gallery_id, probe_id=probe_id)
            confirmed = self._gateway.call(self._matching.ConfirmMatch, request, person)
            return HitState(pb.HitState.Name(confirmed.state))
        dismissal = pb.DismissMatchRequest(gallery_id=gallery_id, probe_id=probe_id)
        dismissed = self._gateway.call(self._matching.DismissMatch, dismissal, person)
        return HitState(pb.HitState.Name(dismissed.state))
