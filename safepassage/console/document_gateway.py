"""The console's call to TravelDocumentService.VerifyDocument, as the person, and its plain answer.

The chip's files go to the service as read; the answer keeps the faces' comparison and the proof of
the document (passive authentication), never a field of DG1 (the MRZ: name, number): the service
sends none back, and this module reads none.
"""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.api.v1 import travel_document_pb2_grpc as tpb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = ["ChipFiles", "DocumentAnswer", "DocumentDecision", "DocumentGateway"]


@dataclass(frozen=True)
class ChipFiles:
    """The files the reader application read from the chip: DG2 required, the SOD and DG1 optional."""

    dg2: bytes
    sod: bytes = b""
    dg1: bytes = b""


@dataclass(frozen=True)
class DocumentAnswer:
    decision: str  # MATCH or NO_MATCH (NO_MATCH too when passive authentication failed)
    face_match: bool
    score: float
    threshold: float
    metric: str
    proof: str  # PA_PASSED, PA_FAILED or PA_NOT_CHECKED
    failure: str  # the PassiveAuthenticationFailure name when PA_FAILED, else ""
    detail: str
    country: str
    data_groups: tuple[int, ...]
    face_record_format: str
    image_format: str
    document_expired: bool | None
    check_id: str  # the check's id in the transparency log, which a decision names

    @property
    def matched(self) -> bool:
        return self.decision == "MATCH"


@dataclass(frozen=True)
class DocumentDecision:
    """An officer's decision on a chip check, as the answer page's form gives it (the API's enum names)."""

    check_id: str
    service_decision: str  # MATCH or NO_MATCH
    passive_authentication: str  # PA_PASSED, PA_FAILED or PA_NOT_CHECKED
    decision: str  # REVIEW_CONFIRM, REVIEW_REJECT, REVIEW_REFER, REVIEW_CANNOT_DECIDE
    reason: str  # REASON_SAME_PERSON, ...
    note: str


class DocumentGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._documents = tpb_grpc.TravelDocumentServiceStub(gateway.channel)

    def verify_document(self, person: bytes, chip: ChipFiles, live: bytes) -> DocumentAnswer:
        request = tpb.VerifyDocumentRequest(
            document=tpb.TravelDocument(dg2=chip.dg2, sod=chip.sod, dg1=chip.dg1),
            probe=pb.Probe(image=live),
        )
        answer = self._gateway.call(self._documents.VerifyDocument, request, person)
        proof = answer.passive_authentication
        return DocumentAnswer(
            decision=pb.Decision.Name(answer.decision),
            face_match=answer.face_match,
            score=answer.score,
            threshold=answer.threshold,
            metric=pb.Metric.Name(answer.metric),
            proof=tpb.PassiveAuthenticationStatus.Name(proof.status),
            failure=(
                tpb.PassiveAuthenticationFailure.Name(proof.failure) if proof.status == tpb.PA_FAILED else ""
            ),
            detail=proof.detail,
            country=proof.country,
            data_groups=tuple(proof.data_groups),
            face_record_format=answer.face_record_format,
            image_format=answer.image_format,
            document_expired=answer.document_expired if answer.HasField("document_expired") else None,
            check_id=answer.check_id,
        )

    def record_decision(self, person: bytes, decided: DocumentDecision) -> None:
        request = tpb.RecordDocumentDecisionRequest(
            check_id=decided.check_id,
            service_decision=pb.Decision.Value(decided.service_decision),
            passive_authentication=tpb.PassiveAuthenticationStatus.Value(decided.passive_authentication),
            decision=pb.ReviewDecision.Value(decided.decision),
            reason=pb.ReviewReason.Value(decided.reason),
            note=decided.note,
        )
        self._gateway.call(self._documents.RecordDocumentDecision, request, person)
