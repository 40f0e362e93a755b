"""ProtectedIdentityService for the NGO caseworker's pages: the person's own calls (gateway.py).

Every call is the caseworker's, forwarded with their certificate: the access interceptor and the
matrix decide whether their role may call it, the record policy (enrolment/record_policy.py)
whether they may act on that record, with their organisation from the certificate. Nothing here
decides anything. Protobuf stops here: the pages get the plain values below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = [
    "CaseworkerGateway",
    "ConsentChange",
    "Enrolment",
    "EnrolmentDraft",
    "Erasure",
    "ReferralRow",
    "ScopeState",
]


@dataclass(frozen=True)
class EnrolmentDraft:
    """What the two enrolment steps gathered: the holder's (consent, PINs) and the caseworker's."""

    gallery_id: str
    record: pb.ProtectedRecord = field(repr=False)
    face: bytes = field(repr=False)
    language: str  # BCP 47
    consent_text: str
    granted: tuple[str, ...]
    refused: tuple[str, ...]
    pin: str = field(repr=False)
    duress_pin: str = field(repr=False)
    # The service's statement that `face` passed its head-turn check (head_turn.py); b"": a photo.
    face_statement: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Enrolment:
    record_id: str
    recovery_code: str = field(repr=False)
    consent_receipt: str
    credential_text: str = field(repr=False)  # "" when the holder refused verify_at_border
    credential_png: bytes = field(repr=False)
    credential_id: str
    credential_expires: str
    face_liveness: str = ""  # as the consent receipt records it: "head_turn", "supervised" or "none"


@dataclass(frozen=True)
class ScopeState:
    scope: str
    granted: bool
    in_force: bool
    decided_at: str
    withdrawn_at: str


@dataclass(frozen=True)
class ConsentChange:
    record_id: str
    scopes: tuple[ScopeState, ...]
    receipt: str
    erasure_receipt: str


@dataclass(frozen=True)
class Erasure:
    record_id: str
    receipt: str
    templates_removed: int


@dataclass(frozen=True)
class ReferralRow:
    referral_id: int
    record_id: str
    channel: str
    raised_at: str
    raised_by: str
    context: str  # verification, kiosk or pin_lockout
    acknowledged_at: str


def _scopes(state: pb.ConsentState) -> tuple[ScopeState, ...]:
    return tuple(
        ScopeState(s.scope, s.granted, s.in_force, s.decided_at, s.withdrawn_at) for s in state.scopes
    )


def _referral(referral: pb.Referral) -> ReferralRow:
    return ReferralRow(
        referral.referral_id,
        referral.record_id,
        referral.channel,
        referral.raised_at,
        referral.raised_by,
        referral.context,
        referral.acknowledged_at,
    )


class CaseworkerGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._records = pb_grpc.ProtectedIdentityServiceStub(gateway.channel)

    def enrol(self, person: bytes, draft: EnrolmentDraft) -> Enrolment:
        request = pb.EnrolRecordRequest(
            gallery_id=draft.gallery_id,
            record=draft.record,
            faces=[mpb.Probe(image=draft.face)],
            consent=pb.ConsentGiven(
                language=draft.language,
                text=draft.consent_text,
                granted=list(draft.granted),
                refused=list(draft.refused),
            ),
            pin=draft.pin,
            duress_pin=draft.duress_pin,
            face_statement=draft.face_statement,
        )
        answer = self._gateway.call(self._records.EnrolRecord, request, person)
        credential = answer.credential
        return Enrolment(
            record_id=answer.record_id,
            recovery_code=answer.recovery_code,
            consent_receipt=answer.consent_receipt,
            credential_text=credential.text,
            credential_png=credential.qr_png,
            credential_id=credential.credential_id,
            credential_expires=credential.expires_at,
            face_liveness=answer.face_liveness,
        )

    def withdraw(
        self, person: bytes, record_id: str, scopes: Sequence[str], language: str, text: str
    ) -> ConsentChange:
        """Scopes withdrawn on the holder's instruction, recorded by their organisation's caseworker."""
        request = pb.ChangeConsentRequest(
            holder=pb.HolderRef(record_id=record_id),
            consent=pb.ConsentGiven(language=language, text=text, refused=list(scopes)),
        )
        answer = self._gateway.call(self._records.ChangeConsent, request, person)
        return ConsentChange(
            answer.state.record_id or record_id, _scopes(answer.state), answer.receipt, answer.erasure_receipt
        )

    def erase(self, person: bytes, recovery_code: str) -> Erasure:
        """Erasure on the holder's request, proved with their recovery code (the record policy's rule)."""
        request = pb.EraseRecordRequest(holder=pb.HolderRef(recovery_code=recovery_code))
        answer = self._gateway.call(self._records.EraseRecord, request, person)
        return Erasure(answer.record_id, answer.receipt, answer.templates_removed)

    def referrals(self, person: bytes) -> tuple[ReferralRow, ...]:
        request = pb.ListReferralsRequest(include_acknowledged=True)
        answer = self._gateway.call(self._records.ListReferrals, request, person)
        return tuple(_referral(referral) for referral in answer.referrals)

    def acknowledge(self, person: bytes, referral_id: int) -> ReferralRow:
        request = pb.AcknowledgeReferralRequest(referral_id=referral_id)
        return _referral(self._gateway.call(self._records.AcknowledgeReferral, request, person))

    def station_key(self, person: bytes) -> tuple[str, str]:
        """The station id and its public key (PEM), to check the receipts offline."""
        answer = self._gateway.call(self._records.GetPublicKeys, pb.GetPublicKeysRequest(), person)
        return answer.station_id, answer.station_public_pem.decode("ascii")
