"""ProtectedIdentityService: protobuf <-> enrolment calls, nothing else.

Which role may call what is decided by the access interceptor
(authorization.py); what a caller may do to one record, with the proof the
holder brought, by the record policy (safepassage/enrolment/record_policy.py), which
every enrolment flow asks. Here: protobuf in and out, the caller as an
enrolment Actor (role kind and organisation from the certificate), live
captures read and checked (live_capture.py), and the record each call is
about noted for the transparency log (call_notes.py) as soon as it is known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.json_format import MessageToDict, ParseDict

from safepassage import face as faces
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.core.errors import InvalidInput
from safepassage.enrolment import (
    Actor,
    ActorKind,
    ConsentText,
    CredentialRetired,
    Enrolled,
    HolderRef,
    IssuedCredential,
    LiveFace,
    ProtectedRecord,
    ProtectedRecords,
    Proved,
    RecordAccessDenied,
    Referral,
    ScopeGrant,
    admit_one_person,
    change_consent,
    decide,
    erase,
)
from safepassage.enrolment.vault_consents import ConsentEntry
from safepassage.enrolment.views import MinimalView
from safepassage.server.call_notes import note_record
from safepassage.server.conversion import require
from safepassage.server.identity import Caller, Role, current_caller
from safepassage.server.live_capture import LiveCaptureReader, Liveness
from safepassage.server.probes import ProbeReader

# Fields that are optional in the record: proto3's "" stands for "absent".
_NULLABLE = frozenset({"date_of_birth", "expiry", "valid_until", "photo", "face_photo"})


def _nulls_from_pb(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (None if k in _NULLABLE and v == "" else _nulls_from_pb(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls_from_pb(v) for v in value]
    return value


def _nulls_to_pb(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("" if v is None else _nulls_to_pb(v)) for k, v in value.items() if k != "format"}
    if isinstance(value, list):
        return [_nulls_to_pb(v) for v in value]
    return value


def record_from_pb(message: pb.ProtectedRecord) -> ProtectedRecord:
    shape = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return ProtectedRecord.from_dict(_nulls_from_pb(shape))


def record_to_pb(record: ProtectedRecord) -> pb.ProtectedRecord:
    return ParseDict(_nulls_to_pb(record.to_dict()), pb.ProtectedRecord())


def view_to_pb(view: MinimalView) -> pb.MinimalView:
    return ParseDict(_nulls_to_pb(view.to_dict()), pb.MinimalView())


def _utc(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _credential_to_pb(credential: IssuedCredential | None) -> pb.Credential | None:
    if credential is None:
        return None
    return pb.Credential(
        text=credential.text,
        qr_png=credential.qr_png,
        credential_id=credential.credential_id,
        expires_at=credential.expires_at.isoformat(timespec="seconds"),
    )


def _consent_to_pb(record_id: str, entries: list[ConsentEntry] | tuple[ConsentEntry, ...]) -> pb.ConsentState:
    return pb.ConsentState(
        record_id=record_id,
        scopes=[
            pb.ConsentScope(
                scope=entry.grant.label,
                granted=entry.granted,
                in_force=entry.in_force,
                language=entry.language,
                text_sha256=entry.text_sha256,
                decided_at=_utc(entry.decided_at),
                withdrawn_at=_utc(entry.withdrawn_at),
            )
            for entry in entries
        ],
    )


def _referral_to_pb(referral: Referral) -> pb.Referral:
    # referral.organisation is the reader's own (ListReferrals shows no other): not repeated here.
    return pb.Referral(
        referral_id=referral.referral_id,
        record_id=referral.record_id,
        channel=referral.channel,
        raised_at=referral.raised_at.isoformat(timespec="seconds"),
        raised_by=referral.raised_by,
        context=referral.context,
        acknowledged_at=referral.acknowledged_at.isoformat(timespec="seconds")
        if referral.acknowledged_at
        else "",
    )


def _scopes(labels: Any, field: str) -> frozenset[ScopeGrant]:
    try:
        return frozenset(ScopeGrant.parse(str(label)) for label in labels)
    except InvalidInput as error:
        raise type(error)(f"{field}: {error}") from None


def _holder(message: pb.HolderRef) -> HolderRef:
    kind = message.WhichOneof("ref")
    if kind is None:
        raise InvalidInput("holder is empty: give a record_id, recovery_code or credential")
    return HolderRef(**{kind: getattr(message, kind)})


_KINDS = {
    Role.NGO_CASEWORKER: ActorKind.CASEWORKER,
    Role.KIOSK: ActorKind.KIOSK,
    Role.OFFICER: ActorKind.OFFICER,
}


def actor_of(caller: Caller) -> Actor:
    """The caller as the record policy sees it: kind, organisation, label."""
    kind = _KINDS.get(caller.role)
    if kind is None:
        raise RecordAccessDenied(f"role {caller.role.value} never acts on protected records")
    return Actor(caller.label, kind, caller.organisation)


class ProtectedIdentityServicer(pb_grpc.ProtectedIdentityServiceServicer):
    def __init__(self, records: ProtectedRecords, probes: ProbeReader, live: LiveCaptureReader) -> None:
        self._records = records
        self._probes = probes
        self._live = live

    def _image(self, probe: mpb.Probe, gallery_id: str, field: str) -> npt.NDArray[np.float32]:
        if probe.WhichOneof("kind") != "image":
            raise InvalidInput(f"{field}: protected records take face images, never embeddings")
        spec = self._records.gallery_spec(gallery_id)
        (face,) = self._probes.read(probe, spec, faces.FaceSelection.SINGLE, field)
        return face.vector

    def _proved(
        self,
        holder: pb.HolderRef,
        live: mpb.Probe | None,
        statement: bytes,
        pin: str,
        context: grpc.ServicerContext,
        flow: str,
    ) -> tuple[Actor, Proved]:
        """Locate the record, note it for the log, then weigh the live face and PIN given."""
        caller = current_caller()
        actor = actor_of(caller)
        try:
            located = self._records.locate(actor, _holder(holder))
        except CredentialRetired as retired:
            if retired.record_id:  # an old QR code used: the holder can find it in the log
                note_record(retired.record_id, retired.organisation, "credential")
            raise
        note_record(located.record_id, located.organisation, located.proof.label)
        face: LiveFace | None = None
        if live is not None and (live.WhichOneof("kind") or statement):
            spec = self._records.gallery_spec(located.gallery_id)
            face = self._live.read(live, statement, spec, caller, context)
        proved = self._records.prove(located, actor, face, pin, flow)
        note_record(proved.record_id, proved.organisation, proved.proof.label)
        return actor, proved

    def _with_proof(
        self, holder: pb.HolderRef, proof: pb.HolderProof, context: grpc.ServicerContext, flow: str
    ) -> tuple[Actor, Proved]:
        live = mpb.Probe(image=proof.live.image) if proof.live.image else None
        return self._proved(holder, live, proof.live.statement, proof.pin, context, flow)

    def EnrolRecord(
        self, request: pb.EnrolRecordRequest, context: grpc.ServicerContext
    ) -> pb.EnrolRecordResponse:
        caller = current_caller()
        actor = actor_of(caller)
        gallery_id = require(request.gallery_id, "gallery_id")
        record = record_from_pb(request.record)
        consent = decide(
            ConsentText(request.consent.language, request.consent.text),
            _scopes(request.consent.granted, "consent.granted"),
            _scopes(request.consent.refused, "consent.refused"),
        )
        templates = [self._image(face, gallery_id, f"faces[{n}]") for n, face in enumerate(request.faces)]
        if templates:
            # One person throughout: every face, and the photo officers will be shown, is faces[0]'s.
            vectors, fields = list(templates), [f"faces[{n}]" for n in range(len(templates))]
            if record.face_photo:
                photo = mpb.Probe(image=record.face_photo)
                vectors.append(self._image(photo, gallery_id, "record.face_photo"))
                fields.append("record.face_photo")
            spec = self._records.gallery_spec(gallery_id)
            admit_one_person(vectors, spec.metric, spec.threshold, fields)
        face_liveness = Liveness.NONE
        if request.face_statement:
            if not request.faces or request.faces[0].WhichOneof("kind") != "image":
                raise InvalidInput("face_statement: it vouches for faces[0], which must be an image")
            face_liveness = self._live.liveness_of(
                request.faces[0].image, request.face_statement, caller, context, "face_statement"
            )
        enrolled: Enrolled = self._records.enrol(
            actor,
            gallery_id,
            record,
            templates,
            consent,
            request.pin,
            request.duress_pin,
            credential_valid_days=request.credential_valid_days or None,
            face_liveness=face_liveness.value,
        )
        note_record(enrolled.record_id, actor.organisation, "")
        return pb.EnrolRecordResponse(
            record_id=enrolled.record_id,
            recovery_code=enrolled.recovery_code,
            consent_receipt=enrolled.consent_receipt,
            credential=_credential_to_pb(enrolled.credential),
            face_liveness=face_liveness.value,
        )

    def GetConsent(self, request: pb.GetConsentRequest, context: grpc.ServicerContext) -> pb.ConsentState:
        actor, proved = self._with_proof(request.holder, request.proof, context, "consent")
        return _consent_to_pb(proved.record_id, self._records.consent_state(actor, proved))

    def ChangeConsent(
        self, request: pb.ChangeConsentRequest, context: grpc.ServicerContext
    ) -> pb.ChangeConsentResponse:
        actor, proved = self._with_proof(request.holder, request.proof, context, "consent_change")
        changed = change_consent(
            self._records,
            actor,
            proved,
            ConsentText(request.consent.language, request.consent.text),
            _scopes(request.consent.granted, "consent.granted"),
            _scopes(request.consent.refused, "consent.refused"),
        )
        return pb.ChangeConsentResponse(
            state=_consent_to_pb(proved.record_id, changed.entries),
            receipt=changed.receipt,
            erasure_receipt=changed.erased.receipt if changed.erased else "",
        )

    def IssueCredential(
        self, request: pb.IssueCredentialRequest, context: grpc.ServicerContext
    ) -> pb.Credential:
        actor, proved = self._with_proof(request.holder, request.proof, context, "credential")
        issued = self._records.issue_credential(actor, proved, request.valid_days or None)
        message = _credential_to_pb(issued)
        assert message is not None
        return message

    def ChangePin(self, request: pb.ChangePinRequest, context: grpc.ServicerContext) -> pb.ChangePinResponse:
        actor, proved = self._with_proof(request.holder, request.proof, context, "pin_change")
        self._records.change_pin(actor, proved, request.new_pin, request.new_duress_pin)
        return pb.ChangePinResponse(record_id=proved.record_id)

    def GetCredentialRevocations(
        self, request: pb.GetCredentialRevocationsRequest, context: grpc.ServicerContext
    ) -> pb.CredentialRevocations:
        signed, revoked = self._records.credentials.revocations()
        return pb.CredentialRevocations(signed_list=signed, revoked=revoked)

    def VerifyHolder(
        self, request: pb.VerifyHolderRequest, context: grpc.ServicerContext
    ) -> pb.VerifyHolderResponse:
        if request.holder.WhichOneof("ref") == "record_id":
            raise InvalidInput("holder: a verification needs the holder's credential or recovery code")
        flow = "kiosk" if current_caller().role is Role.KIOSK else "verification"
        actor, proved = self._proved(
            request.holder, request.live, request.live_statement, request.pin, context, flow
        )
        verified = self._records.verify_holder(actor, proved, release=bool(request.pin))
        return pb.VerifyHolderResponse(
            decision=mpb.MATCH,
            score=verified.score,
            threshold=verified.threshold,
            view=view_to_pb(verified.view),
            record=record_to_pb(verified.record) if verified.record else None,
            record_id=proved.record_id,
        )

    def CheckDuplicate(
        self, request: pb.CheckDuplicateRequest, context: grpc.ServicerContext
    ) -> pb.CheckDuplicateResponse:
        caller = current_caller()
        actor = actor_of(caller)
        gallery_id = require(request.gallery_id, "gallery_id")
        probe = self._image(request.probe, gallery_id, "probe")
        found = self._records.check_duplicate(actor, gallery_id, probe, request.top_k or 5)
        return pb.CheckDuplicateResponse(
            candidates=[pb.DuplicateCandidate(record_id=r, score=s, match=m) for r, s, m in found.candidates],
            threshold=found.threshold,
            searched=found.searched,
            matches_elsewhere=found.matches_elsewhere,
        )

    def ShareRecord(
        self, request: pb.ShareRecordRequest, context: grpc.ServicerContext
    ) -> pb.ShareRecordResponse:
        actor, proved = self._with_proof(request.holder, request.proof, context, "share")
        record = self._records.share(actor, proved, request.organisation)
        return pb.ShareRecordResponse(record=record_to_pb(record))

    def EraseRecord(
        self, request: pb.EraseRecordRequest, context: grpc.ServicerContext
    ) -> pb.EraseRecordResponse:
        actor, proved = self._with_proof(request.holder, request.proof, context, "erasure")
        erased = erase(self._records, actor, proved)
        return pb.EraseRecordResponse(
            record_id=erased.record_id, receipt=erased.receipt, templates_removed=erased.templates_removed
        )

    def ListReferrals(
        self, request: pb.ListReferralsRequest, context: grpc.ServicerContext
    ) -> pb.ListReferralsResponse:
        caller = current_caller()
        referrals = self._records.referrals.list(
            caller.client_id, caller.organisation, list(request.channels), request.include_acknowledged
        )
        return pb.ListReferralsResponse(referrals=[_referral_to_pb(r) for r in referrals])

    def AcknowledgeReferral(
        self, request: pb.AcknowledgeReferralRequest, context: grpc.ServicerContext
    ) -> pb.Referral:
        caller = current_caller()
        referral = self._records.referrals.acknowledge(
            caller.client_id, caller.organisation, request.referral_id, self._records.now().timestamp()
        )
        # No record hash in the log here: whoever holds the holder's record id (it is on every
        # receipt a coercer can take) must not learn from the log that a referral was raised.
        return _referral_to_pb(referral)

    def RotateRecordKeys(
        self, request: pb.RotateRecordKeysRequest, context: grpc.ServicerContext
    ) -> pb.RotateRecordKeysResponse:
        rotation = self._records.custodian.rotate()
        return pb.RotateRecordKeysResponse(
            kek_version=rotation.kek_version, rewrapped=rotation.rewrapped, destroyed=list(rotation.destroyed)
        )

    def GetPublicKeys(self, request: pb.GetPublicKeysRequest, context: grpc.ServicerContext) -> pb.PublicKeys:
        return pb.PublicKeys(
            station_id=self._records.station.station_id,
            station_public_pem=self._records.station.public_pem(),
            issuer_id=self._records.issuer_id,
            issuer_public_pem=self._records.issuer_public_pem,
        )
