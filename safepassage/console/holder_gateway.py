"""ProtectedIdentityService.VerifyHolder for the officer's holder check: the officer's own call (gateway.py).

The officer gives the holder's card (the QR code's text), the live face the service's own head-turn
check passed with its statement (head_turn.py), and, when the traveller typed it, their PIN. The
record policy decides (safepassage/enrolment/record_policy.py): the card and a matching live face
show the minimal view, where the holder allows border verification; the PIN also releases the
whole record. A duress PIN is answered exactly as the PIN (the service raises its referral
silently), so nothing here can tell them apart, and nothing here decides anything: a refusal is the
service's error. Protobuf stops here: the page gets the plain values below.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.console.gateway import ServiceGateway
from safepassage.console.liveness_gateway import LiveCapture

__all__ = [
    "DocumentState",
    "EntitlementHeld",
    "HeldDocument",
    "HolderCheck",
    "HolderContact",
    "HolderGateway",
    "ReleasedRecord",
    "data_url",
]

_PNG = b"\x89PNG\r\n\x1a\n"


def data_url(image: bytes) -> str:
    """An image of the record (JPEG or PNG, as enrolled) inside the page: nothing is served later."""
    if not image:
        return ""
    kind = "png" if image.startswith(_PNG) else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(image).decode("ascii")


@dataclass(frozen=True)
class DocumentState:
    """A document as the minimal view gives it: no number, no photo."""

    kind: str  # passport, national_id, residence_permit, travel_document, birth_certificate, other
    issuing_country: str
    expiry: str  # "": no expiry
    valid: bool  # judged by the service on the day
    possession: str  # held_by_holder, withheld_by_employer, lost_or_stolen, unknown


@dataclass(frozen=True)
class HolderContact:
    organisation: str
    phone: str
    email: str
    referral_channel: str


@dataclass(frozen=True)
class HeldDocument:
    """A document of the released record (the PIN typed): its number and photo too."""

    kind: str
    number: str = field(repr=False)
    issuing_country: str
    expiry: str
    possession: str
    photo: bytes = field(repr=False)


@dataclass(frozen=True)
class EntitlementHeld:
    kind: str  # work_permit, visa, residence_permit, other
    reference: str = field(repr=False)
    employer: str
    contract_terms: str
    valid_from: str
    valid_until: str  # "": open-ended


@dataclass(frozen=True)
class ReleasedRecord:
    """What the holder's PIN adds to the minimal view."""

    date_of_birth: str
    nationality: str
    preferred_language: str
    documents: tuple[HeldDocument, ...]
    entitlements: tuple[EntitlementHeld, ...]


@dataclass(frozen=True)
class HolderCheck:
    """The service's answer: the minimal view, and the released record when a PIN was given."""

    matched: bool
    given_names: str = field(repr=False)
    family_name: str = field(repr=False)
    face_photo: bytes = field(repr=False)
    documents: tuple[DocumentState, ...]
    contact: HolderContact
    record: ReleasedRecord | None = field(repr=False)


def _contact(contact: pb.NgoContact) -> HolderContact:
    return HolderContact(contact.organisation, contact.phone, contact.email, contact.referral_channel)


def _released(record: pb.ProtectedRecord) -> ReleasedRecord:
    details = record.details
    return ReleasedRecord(
        date_of_birth=details.date_of_birth,
        nationality=details.nationality,
        preferred_language=details.preferred_language,
        documents=tuple(
            HeldDocument(d.kind, d.number, d.issuing_country, d.expiry, d.possession, d.photo)
            for d in record.documents
        ),
        entitlements=tuple(
            EntitlementHeld(e.kind, e.reference, e.employer, e.contract_terms, e.valid_from, e.valid_until)
            for e in record.entitlements
        ),
    )


class HolderGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._records = pb_grpc.ProtectedIdentityServiceStub(gateway.channel)

    def verify_holder(self, person: bytes, card: str, live: LiveCapture | None, pin: str) -> HolderCheck:
        """VerifyHolder as the officer: the card, the live face (None: none, the service refuses), the PIN."""
        request = pb.VerifyHolderRequest(holder=pb.HolderRef(credential=card), pin=pin)
        if live is not None:
            request.live.CopyFrom(mpb.Probe(image=live.image))
            request.live_statement = live.statement
        answer = self._gateway.call(self._records.VerifyHolder, request, person)
        view = answer.view
        return HolderCheck(
            matched=answer.decision == mpb.MATCH,
            given_names=view.given_names,
            family_name=view.family_name,
            face_photo=view.face_photo,
            documents=tuple(
                DocumentState(d.kind, d.issuing_country, d.expiry, d.valid, d.possession)
                for d in view.documents
            ),
            contact=_contact(view.contact),
            record=_released(answer.record) if answer.HasField("record") else None,
        )
