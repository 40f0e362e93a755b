"""ProtectedIdentityService: protobuf <-> enrolment calls, nothing else.

Who may call what is decided by the access interceptor (authorization.py);
here, only which caller may name a record id (NGO caseworkers acting for a
holder) as opposed to proving the holder (recovery code, credential), and
whether a verification is a border check (an officer: needs the holder's
"verify_at_border" consent) or the holder at an NGO kiosk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.json_format import MessageToDict, ParseDict

import faces
from enrolment import (
    ConsentText,
    Enrolled,
    HolderRef,
    IssuedCredential,
    ProtectedRecord,
    ProtectedRecords,
    Referral,
    ScopeGrant,
    change_consent,
    decide,
    erase,
)
from enrolment.vault import ConsentEntry
from enrolment.views import MinimalView
from safepassage_api.v1 import matching_pb2 as mpb
from safepassage_api.v1 import protected_identity_pb2 as pb
from safepassage_api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage_core.errors import InvalidInput
from safepassage_server.conversion import require
from safepassage_server.identity import Caller, Role, current_caller
from safepassage_server.probes import ProbeReader

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


class ProtectedIdentityServicer(pb_grpc.ProtectedIdentityServiceServicer):
    def __init__(self, records: ProtectedRecords, probes: ProbeReader) -> None:
        self._records = records
        self._probes = probes

    def _locate(self, message: pb.HolderRef, caller: Caller) -> str:
        return self._records.locate(_holder(message), may_name_record=caller.role is Role.NGO_CASEWORKER)

    def _vector(self, probe: mpb.Probe, gallery_id: str, field: str) -> npt.NDArray[np.float32]:
        spec = self._records.gallery_spec(gallery_id)
        (face,) = self._probes.read(probe, spec, faces.FaceSelection.SINGLE, field)
        return face.vector

    def EnrolRecord(
        self, request: pb.EnrolRecordRequest, context: grpc.ServicerContext
    ) -> pb.EnrolRecordResponse:
        caller = current_caller()
        gallery_id = require(request.gallery_id, "gallery_id")
        record = record_from_pb(request.record)
        consent = decide(
            ConsentText(request.consent.language, request.consent.text),
            _scopes(request.consent.granted, "consent.granted"),
            _scopes(request.consent.refused, "consent.refused"),
        )
        templates = [self._vector(face, gallery_id, f"faces[{n}]") for n, face in enumerate(request.faces)]
        enrolled: Enrolled = self._records.enrol(
            gallery_id,
            record,
            templates,
            consent,
            request.pin,
            request.duress_pin,
            enrolled_by=caller.label,
            credential_valid_days=request.credential_valid_days or None,
        )
        return pb.EnrolRecordResponse(
            record_id=enrolled.record_id,
            recovery_code=enrolled.recovery_code,
            consent_receipt=enrolled.consent_receipt,
            credential=_credential_to_pb(enrolled.credential),
        )

    def GetConsent(self, request: pb.GetConsentRequest, context: grpc.ServicerContext) -> pb.ConsentState:
        record_id = self._locate(request.holder, current_caller())
        return _consent_to_pb(record_id, self._records.vault.consents(record_id))

    def ChangeConsent(
        self, request: pb.ChangeConsentRequest, context: grpc.ServicerContext
    ) -> pb.ChangeConsentResponse:
        caller = current_caller()
        record_id = self._locate(request.holder, caller)
        changed = change_consent(
            self._records,
            record_id,
            ConsentText(request.consent.language, request.consent.text),
            _scopes(request.consent.granted, "consent.granted"),
            _scopes(request.consent.refused, "consent.refused"),
            requested_by=self._requester(request.holder, caller),
        )
        return pb.ChangeConsentResponse(
            state=_consent_to_pb(record_id, changed.entries),
            receipt=changed.receipt,
            erasure_receipt=changed.erased.receipt if changed.erased else "",
        )

    @staticmethod
    def _requester(holder: pb.HolderRef, caller: Caller) -> str:
        return caller.label if holder.WhichOneof("ref") == "record_id" else "holder"

    def IssueCredential(
        self, request: pb.IssueCredentialRequest, context: grpc.ServicerContext
    ) -> pb.Credential:
        record_id = self._locate(request.holder, current_caller())
        issued = self._records.issue_credential(record_id, request.valid_days or None)
        message = _credential_to_pb(issued)
        assert message is not None
        return message

    def VerifyHolder(
        self, request: pb.VerifyHolderRequest, context: grpc.ServicerContext
    ) -> pb.VerifyHolderResponse:
        caller = current_caller()
        if request.holder.WhichOneof("ref") == "record_id":
            raise InvalidInput("holder: a verification needs the holder's credential or recovery code")
        record_id = self._locate(request.holder, caller)
        gallery_id = self._records.vault.get(record_id).gallery_id
        live = self._vector(request.live, gallery_id, "live")
        at_border = caller.role is not Role.KIOSK
        verified = self._records.verify_holder(
            record_id,
            live,
            request.pin,
            verified_by=caller.label,
            context="verification" if at_border else "kiosk",
            needs_consent=at_border,
        )
        return pb.VerifyHolderResponse(
            decision=mpb.MATCH,
            score=verified.score,
            threshold=verified.threshold,
            view=view_to_pb(verified.view),
            record=record_to_pb(verified.record) if verified.record else None,
            record_id=record_id,
        )

    def CheckDuplicate(
        self, request: pb.CheckDuplicateRequest, context: grpc.ServicerContext
    ) -> pb.CheckDuplicateResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        probe = self._vector(request.probe, gallery_id, "probe")
        candidates, threshold, searched = self._records.check_duplicate(gallery_id, probe, request.top_k or 5)
        return pb.CheckDuplicateResponse(
            candidates=[pb.DuplicateCandidate(record_id=r, score=s, match=m) for r, s, m in candidates],
            threshold=threshold,
            searched=searched,
        )

    def ShareRecord(
        self, request: pb.ShareRecordRequest, context: grpc.ServicerContext
    ) -> pb.ShareRecordResponse:
        record_id = require(request.record_id, "record_id")
        organisation = require(request.organisation, "organisation")
        return pb.ShareRecordResponse(record=record_to_pb(self._records.share(record_id, organisation)))

    def EraseRecord(
        self, request: pb.EraseRecordRequest, context: grpc.ServicerContext
    ) -> pb.EraseRecordResponse:
        caller = current_caller()
        record_id = self._locate(request.holder, caller)
        erased = erase(self._records, record_id, self._requester(request.holder, caller))
        return pb.EraseRecordResponse(
            record_id=erased.record_id, receipt=erased.receipt, templates_removed=erased.templates_removed
        )

    def ListReferrals(
        self, request: pb.ListReferralsRequest, context: grpc.ServicerContext
    ) -> pb.ListReferralsResponse:
        referrals = self._records.referrals.list(
            current_caller().client_id, list(request.channels), request.include_acknowledged
        )
        return pb.ListReferralsResponse(referrals=[_referral_to_pb(r) for r in referrals])

    def AcknowledgeReferral(
        self, request: pb.AcknowledgeReferralRequest, context: grpc.ServicerContext
    ) -> pb.Referral:
        referral = self._records.referrals.acknowledge(
            current_caller().client_id, request.referral_id, self._records.now().timestamp()
        )
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
