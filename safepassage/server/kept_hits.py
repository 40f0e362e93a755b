"""Kept CCTV hits and their review: what MatchingService keeps of a camera's match, and the queue.

A camera's search that matched keeps its probe (the vector, the camera's face crop where it sent
one) with the evidence a reviewer needs: the candidate, the score and threshold, and the CCTV
authorisation that admitted the search (id, legal basis, expiry; noted by the access interceptor,
call_notes.py). ConfirmMatch asks the access policy whether the caller may confirm it; the probe
store then takes two different reviewers (four eyes), and DismissMatch erases the hit at once.
ListKeptHits is the reviewers' queue, with each hit's time left before the retention purges it.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.matcher import Matcher
from safepassage.server.authorization import check_confirmation
from safepassage.server.call_notes import noted_authorisation, noted_authorisation_terms
from safepassage.server.conversion import metric_to_pb, require
from safepassage.server.identity import Caller, current_caller
from safepassage.server.probes import ProbeFace

__all__ = ["KeptHits", "timestamp"]

_HIT_STATES = {
    store.HitState.AWAITING_REVIEW: pb.AWAITING_REVIEW,
    store.HitState.AWAITING_SECOND_REVIEW: pb.AWAITING_SECOND_REVIEW,
    store.HitState.CONFIRMED: pb.CONFIRMED,
    store.HitState.DISMISSED: pb.DISMISSED,
}
_HIT_ACTIONS = {store.ReviewAction.CONFIRM: pb.HIT_CONFIRM, store.ReviewAction.DISMISS: pb.HIT_DISMISS}


def timestamp(seconds: float) -> Timestamp:
    moment = Timestamp()
    moment.FromNanoseconds(round(seconds * 1e9))
    return moment


def _review_to_pb(review: store.ProbeReview) -> pb.HitReview:
    return pb.HitReview(
        reviewer=review.reviewed_by,
        action=_HIT_ACTIONS[review.action],
        reviewed_at=timestamp(review.reviewed_at),
    )


class KeptHits:
    def __init__(self, matcher: Matcher, kept_probes: store.ProbeStore, retention_s: float) -> None:
        self._matcher = matcher
        self._kept = kept_probes
        self._retention_s = retention_s  # an unconfirmed hit's life, for the queue's time left

    def keep(
        self, camera: Caller, result: pb.IdentifyResponse, faces: list[ProbeFace], face_crop: bytes
    ) -> int:
        """Keep a CCTV probe that matched, for two reviewers to confirm; purged after the retention."""
        face, found = next((f, r) for f, r in zip(faces, result.faces, strict=True) if r.decision == pb.MATCH)
        best = found.candidates[0]
        legal_basis, expires = noted_authorisation_terms()
        score = best.normalised_score if best.HasField("normalised_score") else best.score
        evidence = store.HitEvidence(
            score, result.threshold, legal_basis, float(expires) if expires else None
        )
        return self._kept.keep(
            result.gallery_id,
            camera.client_id,
            face.vector,
            best.reference_id,
            authorisation_id=noted_authorisation(),
            evidence=evidence,
            face_crop=face_crop,
        )

    def confirm(self, request: pb.ConfirmMatchRequest) -> pb.ConfirmMatchResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        spec = self._matcher.spec(gallery_id)
        # Looked up within the named gallery: another gallery's probe is NOT_FOUND, as if never kept
        # (a dismissed one is the store's to refuse, saying so).
        caller = current_caller()
        try:
            kept = self._kept.get(request.probe_id, gallery_id)
        except store.ProbeNotFound:
            kept = None
        if kept is not None:
            check_confirmation(caller, gallery_id, spec.purpose, kept.authorisation_id)
        hit = self._kept.confirm(request.probe_id, gallery_id, caller.label)
        return pb.ConfirmMatchResponse(
            probe_id=hit.probe.probe_id,
            reference_id=hit.probe.candidate,
            state=_HIT_STATES[hit.state],
            reviews=[_review_to_pb(r) for r in hit.reviews],
        )

    def dismiss(self, request: pb.DismissMatchRequest) -> pb.DismissMatchResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        self._matcher.spec(gallery_id)  # NOT_FOUND for no gallery; the interceptor checked its purpose
        self._kept.dismiss(request.probe_id, gallery_id, current_caller().label)
        return pb.DismissMatchResponse(probe_id=request.probe_id, state=pb.DISMISSED)

    def list(self, request: pb.ListKeptHitsRequest) -> pb.ListKeptHitsResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        spec = self._matcher.spec(gallery_id)
        response = pb.ListKeptHitsResponse(
            metric=metric_to_pb(spec.metric), retention_hours=self._retention_s / 3600
        )
        for hit in self._kept.queue(gallery_id, request.camera_id):
            if request.probe_id and hit.probe.probe_id != request.probe_id:
                continue
            shown = self._to_pb(hit)
            if request.include_face_crops and hit.evidence.has_face_crop:
                shown.face_crop = self._kept.face_crop(hit.probe.probe_id, gallery_id) or b""
            response.hits.append(shown)
        return response

    def _to_pb(self, hit: store.QueuedHit) -> pb.KeptHit:
        probe, evidence = hit.probe, hit.evidence
        shown = pb.KeptHit(
            probe_id=probe.probe_id,
            camera_id=probe.camera_id,
            kept_at=timestamp(probe.captured_at),
            authorisation_id=probe.authorisation_id,
            legal_basis=evidence.legal_basis,
            reference_id=probe.candidate,
            state=_HIT_STATES[hit.state],
            reviews=[_review_to_pb(r) for r in hit.reviews],
            has_face_crop=evidence.has_face_crop,
        )
        if not probe.confirmed:
            shown.purge_at.CopyFrom(timestamp(probe.captured_at + self._retention_s))
        if evidence.authorisation_expires is not None:
            shown.authorisation_expires.CopyFrom(timestamp(evidence.authorisation_expires))
        if evidence.score is not None:
            shown.score = evidence.score
        if evidence.threshold is not None:
            shown.threshold = evidence.threshold
        return shown
