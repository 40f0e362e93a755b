"""The console's only way to the service: loopback mutual-TLS gRPC, the person's certificate forwarded.

The channel presents the console's own certificate, which the server pins; every call carries the
person's certificate (DER) in the ``x-safepassage-forwarded-certificate-bin`` metadata, so the
server authenticates, authorises, rate-limits and logs it as that person's own call
(safepassage/server/forwarding.py). The console asks nothing on its own account: with no person
there is no call. Protobuf types stop here: callers get the plain values of answers.py, and a
refusal is the console error of its category (refusals.py), with the service's own message.

Calls are blocking (gRPC's synchronous stubs, on a thread of the console's executor), each with a
deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from safepassage.api.v1 import access_pb2 as apb
from safepassage.api.v1 import access_pb2_grpc as apb_grpc
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console.answers import (
    Candidate,
    FaceAnswer,
    GalleryThreshold,
    Person,
    SearchAnswer,
    SearchKind,
)
from safepassage.console.refusals import from_status
from safepassage.console.settings import ConsoleSettings

__all__ = ["FORWARDED_CERTIFICATE", "Decision", "ServiceGateway"]

# The metadata key the server reads the person's certificate from (server/forwarding.py).
FORWARDED_CERTIFICATE = "x-safepassage-forwarded-certificate-bin"

_Answer = TypeVar("_Answer")
_PURPOSES = {pb.WATCHLIST: "watchlist", pb.PROTECTED_IDENTITY: "protected_identity"}
_SEARCH_KINDS = {
    SearchKind.VERIFY: pb.SEARCH_VERIFY,
    SearchKind.IDENTIFY: pb.SEARCH_IDENTIFY,
    SearchKind.FEW: pb.SEARCH_IDENTIFY_FEW,
}


@dataclass(frozen=True)
class Decision:
    """An officer's decision on an answer, as the desk's form gives it (enum names of the API)."""

    gallery_id: str
    search: SearchKind
    reference_id: str  # "" : the answer as a whole
    service_decision: str  # MATCH or NO_MATCH
    decision: str  # REVIEW_CONFIRM, REVIEW_REJECT, REVIEW_REFER, REVIEW_CANNOT_DECIDE
    reason: str  # REASON_SAME_PERSON, ...
    note: str


class ServiceGateway:
    def __init__(self, settings: ConsoleSettings) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=settings.ca_pem,
            private_key=settings.console_key_pem,
            certificate_chain=settings.console_cert_pem,
        )
        self._channel = grpc.secure_channel(
            settings.service_target,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", settings.service_name),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.max_receive_message_length", settings.max_message_bytes),
            ],
        )
        self._timeout = settings.call_timeout_s
        self._access = apb_grpc.AccessServiceStub(self._channel)
        self._galleries = pb_grpc.GalleryServiceStub(self._channel)
        self._matching = pb_grpc.MatchingServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    @property
    def channel(self) -> grpc.Channel:
        """The loopback channel, for the console's other gateways (admin_gateway.py)."""
        return self._channel

    def call(self, method: Callable[..., _Answer], request: object, person: bytes) -> _Answer:
        """One call to the service as the person: their certificate forwarded, a refusal raised."""
        return self._call(method, request, person)

    def _call(self, method: Callable[..., _Answer], request: object, person: bytes) -> _Answer:
        try:
            return method(request, metadata=[(FORWARDED_CERTIFICATE, person)], timeout=self._timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNAVAILABLE
            details = (error.details() if isinstance(error, grpc.Call) else "") or ""
            raise from_status(code, details) from None

    # -- who ------------------------------------------------------------------------------

    def describe_caller(self, person: bytes) -> Person:
        answer = self._call(self._access.DescribeCaller, apb.DescribeCallerRequest(), person)
        return Person(
            client_id=answer.client_id,
            role=answer.role,
            organisation=answer.organisation,
            serial=answer.certificate_serial,
            via=answer.via,
            permissions=tuple(
                (p.operation, frozenset(_PURPOSES.get(purpose, "") for purpose in p.purposes))
                for p in answer.permissions
            ),
        )

    # -- galleries and searches ----------------------------------------------------------------

    def describe_gallery(self, person: bytes, gallery_id: str) -> GalleryThreshold:
        answer = self._call(
            self._galleries.DescribeGallery, pb.DescribeGalleryRequest(gallery_id=gallery_id), person
        )
        return GalleryThreshold(
            gallery_id=answer.gallery_id,
            size=answer.size,
            threshold=answer.threshold,
            metric=pb.Metric.Name(answer.metric),
            origin=pb.ThresholdOrigin.Name(answer.threshold_origin),
            target_fpir=answer.target_fpir if answer.HasField("target_fpir") else None,
            implied_fpir=answer.implied_fpir if answer.HasField("implied_fpir") else None,
            implied_fpir_basis=answer.implied_fpir_basis,
            keeps_reference_images=answer.keep_reference_images,
        )

    def verify(self, person: bytes, gallery_id: str, reference_id: str, image: bytes) -> SearchAnswer:
        request = pb.VerifyRequest(
            gallery_id=gallery_id, reference_id=reference_id, probe=pb.Probe(image=image)
        )
        answer = self._call(self._matching.Verify, request, person)
        decision = pb.Decision.Name(answer.decision)
        box = _box(answer.box) if answer.HasField("box") else None
        ratio = answer.normalised_score if answer.HasField("normalised_score") else None
        candidate = Candidate(1, reference_id, answer.score, answer.decision == pb.MATCH, ratio)
        return SearchAnswer(
            kind=SearchKind.VERIFY,
            gallery_id=gallery_id,
            decision=decision,
            threshold=answer.threshold,
            metric=pb.Metric.Name(answer.metric),
            threshold_source="",
            gallery_threshold_origin="",
            target_fpir=None,
            faces=(FaceAnswer(box, decision, (candidate,)),),
            compared=1,
        )

    def identify(
        self, person: bytes, gallery_id: str, image: bytes, top_k: int, restrict_to: Sequence[str] = ()
    ) -> SearchAnswer:
        request = pb.IdentifyRequest(
            gallery_id=gallery_id, probe=pb.Probe(image=image), top_k=top_k, restrict_to=list(restrict_to)
        )
        answer = self._call(self._matching.Identify, request, person)
        faces = tuple(
            FaceAnswer(
                _box(face.box) if face.HasField("box") else None,
                pb.Decision.Name(face.decision),
                tuple(
                    Candidate(
                        c.rank,
                        c.reference_id,
                        c.score,
                        c.match,
                        c.normalised_score if c.HasField("normalised_score") else None,
                    )
                    for c in face.candidates
                ),
            )
            for face in answer.faces
        )
        return SearchAnswer(
            kind=SearchKind.FEW if restrict_to else SearchKind.IDENTIFY,
            gallery_id=answer.gallery_id or gallery_id,
            decision=pb.Decision.Name(answer.decision),
            threshold=answer.threshold,
            metric=pb.Metric.Name(answer.metric),
            threshold_source=pb.ThresholdSource.Name(answer.threshold_source),
            gallery_threshold_origin=pb.ThresholdOrigin.Name(answer.gallery_threshold_origin),
            target_fpir=answer.target_fpir if answer.HasField("target_fpir") else None,
            faces=faces,
            compared=len(set(restrict_to)),
        )

    # -- the officer's decision ------------------------------------------------------------------

    def record_decision(self, person: bytes, decision: Decision) -> None:
        request = pb.RecordDecisionRequest(
            gallery_id=decision.gallery_id,
            search=_SEARCH_KINDS[decision.search],
            reference_id=decision.reference_id,
            service_decision=pb.Decision.Value(decision.service_decision),
            decision=pb.ReviewDecision.Value(decision.decision),
            reason=pb.ReviewReason.Value(decision.reason),
            note=decision.note,
        )
        self._call(self._matching.RecordDecision, request, person)


def _box(box: pb.FaceBox) -> tuple[int, int, int, int]:
    return (box.left, box.top, box.right, box.bottom)
