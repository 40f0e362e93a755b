"""Shared set-up for the protected identity tests: a server with an agency reader key, real faces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb

GALLERY = "protected"
CONSENT_TEXT = "I agree that SafePassage keeps my identity record. Ich stimme zu."
ALL_SCOPES = ["store", "verify_at_border", "duplicate_check", "share:la-strada"]
PIN, DURESS_PIN = "482916", "731105"
# People of the LFW set with several photos: enrolled from one, checked with another.
HOLDER, OTHER, THIRD = "Al_Sharpton", "Andre_Agassi", "Angela_Bassett"
# The photos (by sorted position) in which the face pipeline finds exactly one face.
SINGLE_FACE = {HOLDER: [0, 1, 2, 3, 4], OTHER: [1, 2, 3, 4], THIRD: [0, 1, 3, 4]}


@dataclass(frozen=True)
class Person:
    name: str
    photos: list[Path]

    def photo(self, n: int) -> bytes:
        return self.photos[n].read_bytes()

    def probe(self, n: int) -> mpb.Probe:
        return mpb.Probe(image=self.photo(n))


def person(faces_dir: Path, name: str) -> Person:
    photos = sorted((faces_dir / "lfw" / name).glob("*.jpg"))
    return Person(name, [photos[n] for n in SINGLE_FACE[name]])


def record_message(
    given: str, family: str, number: str, face: bytes, document_photo: bytes
) -> pb.ProtectedRecord:
    return pb.ProtectedRecord(
        details=pb.PersonalDetails(
            given_names=given,
            family_name=family,
            date_of_birth="1990-04-02",
            nationality="NPL",
            preferred_language="ne-NP",
        ),
        documents=[
            pb.IdentityDocument(
                kind="passport",
                number=number,
                issuing_country="NPL",
                expiry="2031-01-31",
                possession="withheld_by_employer",
                photo=document_photo,
            ),
            pb.IdentityDocument(
                kind="national_id",
                number="NID-77-3",
                issuing_country="NPL",
                expiry="2020-01-01",
                possession="held_by_holder",
            ),
        ],
        entitlements=[
            pb.Entitlement(
                kind="work_permit",
                reference="WP-2025-5561",
                employer="Gulf Construction Services",
                contract_terms="48 h a week, 1200 a month, housing provided",
                valid_from="2025-02-01",
                valid_until="2027-01-31",
            )
        ],
        contact=pb.NgoContact(
            organisation="La Strada International",
            phone="+31 20 688 1414",
            email="help@lastrada.example",
            referral_channel="la-strada-hotline",
        ),
        face_photo=face,
    )


def enrol(
    stubs: Any,
    holder: Person,
    given: str,
    family: str,
    number: str,
    granted: list[str] | None = None,
    refused: list[str] | None = None,
) -> pb.EnrolRecordResponse:
    answer: pb.EnrolRecordResponse = stubs.protected.EnrolRecord(
        pb.EnrolRecordRequest(
            gallery_id=GALLERY,
            record=record_message(given, family, number, holder.photo(0), holder.photo(1)),
            faces=[holder.probe(0)],
            consent=pb.ConsentGiven(
                language="en",
                text=CONSENT_TEXT,
                granted=ALL_SCOPES if granted is None else granted,
                refused=refused or [],
            ),
            pin=PIN,
            duress_pin=DURESS_PIN,
        )
    )
    return answer


def receipt_body(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def signed_live(
    issued: Any, image: bytes, liveness: str = "supervised", client_id: str | None = None
) -> pb.LiveCapture:
    """A live capture as a device sends it: the image and its statement signed with the device's key.

    `issued` is the device's IssuedCert (its key signs; its certificate's CN names the device).
    """
    from safepassage import credential as holder_credential

    device = client_id or issued.record.client_id
    statement = holder_credential.sign_capture(
        issued.key_pem, device, image, holder_credential.Liveness(liveness)
    )
    return pb.LiveCapture(image=image, statement=statement)


def holder_proof(issued: Any, image: bytes, pin: str = "", liveness: str = "supervised") -> pb.HolderProof:
    """The holder's live face (signed by the device `issued`) and PIN: the proof beside a credential."""
    return pb.HolderProof(live=signed_live(issued, image, liveness), pin=pin)


def verify_request(
    issued: Any, credential: str, image: bytes, pin: str = "", liveness: str = "supervised"
) -> pb.VerifyHolderRequest:
    live = signed_live(issued, image, liveness)
    return pb.VerifyHolderRequest(
        holder=pb.HolderRef(credential=credential),
        live=mpb.Probe(image=live.image),
        live_statement=live.statement,
        pin=pin,
    )
