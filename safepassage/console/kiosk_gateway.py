"""The kiosk's calls to the service: the holder's own record, each call carrying the holder's proof.

A holder at the NGO's kiosk names their record with what they hold: the recovery code (which is
also the full holder proof) or a credential (which proves nothing alone: the record policy asks
for a live face that matches and the PIN beside it, safepassage/enrolment/record_policy.py). The
live face is the frame the service's own head-turn check passed, with its statement (head_turn.py):
fresh for each call, since a statement is accepted once. The service weighs what is forwarded, and
refuses a credential that comes alone, or with a PIN and no live face.
Protobuf types stop here: pages get the plain values below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.console.gateway import ServiceGateway
from safepassage.console.liveness_gateway import LiveCapture
from safepassage.console.refusals import FormIncomplete

__all__ = ["Changed", "Erased", "HolderProof", "IssuedCard", "KioskGateway", "RecordConsent", "ScopeState"]


@dataclass(frozen=True)
class HolderProof:
    """What the holder presented at the kiosk: a recovery code, or a credential (with their PIN)."""

    recovery_code: str = field(default="", repr=False)
    credential: str = field(default="", repr=False)
    pin: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if bool(self.recovery_code) == bool(self.credential):
            raise FormIncomplete("give the recovery code, or the card's code")

    def holder(self) -> pb.HolderRef:
        if self.recovery_code:
            return pb.HolderRef(recovery_code=self.recovery_code)
        return pb.HolderRef(credential=self.credential)

    @property
    def needs_live_face(self) -> bool:
        """A card's code proves the holder only with a live face that matches (and the PIN)."""
        return bool(self.credential)

    def proof(self, live: LiveCapture | None = None) -> pb.HolderProof:
        if live is None:
            return pb.HolderProof(pin=self.pin)
        return pb.HolderProof(pin=self.pin, live=pb.LiveCapture(image=live.image, statement=live.statement))


@dataclass(frozen=True)
class ScopeState:
    scope: str  # "store", "verify_at_border", "duplicate_check", "share:<organisation>"
    granted: bool
    in_force: bool
    decided_at: str
    withdrawn_at: str


@dataclass(frozen=True)
class RecordConsent:
    record_id: str
    scopes: tuple[ScopeState, ...]

    def in_force(self, scope: str) -> bool:
        return any(state.scope == scope and state.in_force for state in self.scopes)


@dataclass(frozen=True)
class Changed:
    consent: RecordConsent
    receipt: str  # the signed consent receipt (JSON)


@dataclass(frozen=True)
class IssuedCard:
    text: str  # what the QR code holds
    qr_png: bytes
    expires_at: str


@dataclass(frozen=True)
class Erased:
    record_id: str
    receipt: str  # the signed erasure receipt (JSON)
    station_id: str
    station_public_pem: str  # the key that checks it (`safepassage records verify-receipt`)


def _consent(state: pb.ConsentState) -> RecordConsent:
    return RecordConsent(
        state.record_id,
        tuple(ScopeState(s.scope, s.granted, s.in_force, s.decided_at, s.withdrawn_at) for s in state.scopes),
    )


class KioskGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._protected = pb_grpc.ProtectedIdentityServiceStub(gateway.channel)

    def consent(self, person: bytes, proof: HolderProof, live: LiveCapture | None = None) -> RecordConsent:
        request = pb.GetConsentRequest(holder=proof.holder(), proof=proof.proof(live))
        return _consent(self._gateway.call(self._protected.GetConsent, request, person))

    def change_consent(
        self,
        person: bytes,
        proof: HolderProof,
        language: str,
        text: str,
        granted: tuple[str, ...] = (),
        refused: tuple[str, ...] = (),
        live: LiveCapture | None = None,
    ) -> Changed:
        request = pb.ChangeConsentRequest(
            holder=proof.holder(),
            consent=pb.ConsentGiven(language=language, text=text, granted=granted, refused=refused),
            proof=proof.proof(live),
        )
        answer = self._gateway.call(self._protected.ChangeConsent, request, person)
        return Changed(_consent(answer.state), answer.receipt)

    def change_pin(
        self,
        person: bytes,
        proof: HolderProof,
        new_pin: str,
        new_duress_pin: str,
        live: LiveCapture | None = None,
    ) -> None:
        request = pb.ChangePinRequest(
            holder=proof.holder(), proof=proof.proof(live), new_pin=new_pin, new_duress_pin=new_duress_pin
        )
        self._gateway.call(self._protected.ChangePin, request, person)

    def issue_card(self, person: bytes, proof: HolderProof, live: LiveCapture | None = None) -> IssuedCard:
        request = pb.IssueCredentialRequest(holder=proof.holder(), proof=proof.proof(live))
        answer = self._gateway.call(self._protected.IssueCredential, request, person)
        return IssuedCard(answer.text, answer.qr_png, answer.expires_at)

    def erase(self, person: bytes, proof: HolderProof, live: LiveCapture | None = None) -> Erased:
        request = pb.EraseRecordRequest(holder=proof.holder(), proof=proof.proof(live))
        answer = self._gateway.call(self._protected.EraseRecord, request, person)
        keys = self._gateway.call(self._protected.GetPublicKeys, pb.GetPublicKeysRequest(), person)
        return Erased(
            answer.record_id, answer.receipt, keys.station_id, keys.station_public_pem.decode("ascii")
        )
