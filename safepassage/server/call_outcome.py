"""What a call's transparency-log entry says about it: its rate class and its answer.

The access interceptor (access.py) decides and records; this module only reads: which
operation class a call is charged as (limits.py), and the outcome and count details an
answer gives its log entry. Hashes and counts only: a client's own text (a stream's
request id, a kept probe's id) enters as a keyed pseudonym (pseudonyms.py).
"""

from __future__ import annotations

import re
from typing import Any

import grpc

from safepassage import store
from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2 as ppb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.server.authorization import Operation
from safepassage.server.limits import OperationClass
from safepassage.server.pseudonyms import LogPseudonyms
from safepassage.server.review_decision import CHECK_ID
from safepassage.travel_document import TravelDocumentError, read_dg1

SEARCHES = frozenset(
    {
        Operation.IDENTIFY,
        Operation.VERIFY,
        Operation.IDENTIFY_STREAM,
        Operation.VERIFY_HOLDER,
        Operation.CHECK_DUPLICATE,
        Operation.VERIFY_DOCUMENT,
        # Not a search of anyone, but it costs as much: the detector on every frame sent.
        Operation.CHECK_LIVENESS,
    }
)
WRITES = frozenset(
    {
        Operation.INSERT_TEMPLATE,
        Operation.BULK_INSERT_TEMPLATES,
        Operation.DELETE_TEMPLATE,
        Operation.CONFIRM_MATCH,
        Operation.DISMISS_MATCH,
        Operation.RECORD_DECISION,
        Operation.RECORD_DOCUMENT_DECISION,
        Operation.ENROL_RECORD,
        Operation.CHANGE_CONSENT,
        Operation.ISSUE_CREDENTIAL,
        Operation.CHANGE_PIN,
        Operation.ERASE_RECORD,
        Operation.ACKNOWLEDGE_REFERRAL,
    }
)
ADMINISTRATION = frozenset(
    {
        Operation.CREATE_GALLERY,
        Operation.DELETE_GALLERY,
        Operation.ROTATE_RECORD_KEYS,
        Operation.CALIBRATE_GALLERY,
        Operation.RENEW_TEMPLATE_PROTECTION,
        Operation.ISSUE_CERTIFICATE,
        Operation.REVOKE_CERTIFICATE,
        Operation.SIGN_AUTHORISATION,
    }
)


# The outcomes of an answered search.
DECISIONS = frozenset({"MATCH", "NO_MATCH"})


# A liveness check runs the detector on every frame it is sent: it costs one search per this many
# frames (the console's ~48 frames: 4 searches, within a kiosk's burst of 5; the most, 64: 6).
FRAMES_PER_SEARCH = 12


def operation_cost(operation: Operation, request: Any) -> int:
    """How many units of its class a call costs: one, but a liveness check by the frames it sends."""
    if operation is Operation.CHECK_LIVENESS and isinstance(request, cpb.CheckLivenessRequest):
        return max(1, -(-len(request.frames) // FRAMES_PER_SEARCH))
    return 1


def operation_class(operation: Operation) -> OperationClass:
    if operation in SEARCHES:
        return OperationClass.SEARCH
    if operation in WRITES:
        return OperationClass.WRITE
    if operation in ADMINISTRATION:
        return OperationClass.ADMIN
    return OperationClass.READ


def outcome_of(response: Any, pseudonyms: LogPseudonyms) -> tuple[str, dict[str, str]]:
    # Same details whatever PIN was given: a duress verification must look ordinary here too.
    # (The record a protected call is about is added from the call's notes: call_notes.py.)
    if isinstance(response, ppb.VerifyHolderResponse):
        return pb.Decision.Name(response.decision), {}
    if isinstance(response, ppb.CheckDuplicateResponse):
        # MATCH / NO_MATCH, so the fishing detector counts duplicate checks like any search.
        matched = response.matches_elsewhere > 0 or any(c.match for c in response.candidates)
        return ("MATCH" if matched else "NO_MATCH"), {
            "candidates": str(len(response.candidates)),
            "searched": str(response.searched),
        }
    if isinstance(response, cpb.LivenessResult):
        # Passed or the check that failed, and the frames read: what an auditor needs to see a
        # kiosk probed with photos, and nothing of the face.
        check = "passed" if response.passed else cpb.LivenessCheck.Name(response.failed_check).lower()
        return "OK", {"liveness": check, "frames": str(response.frames)}
    if isinstance(response, ppb.ListReferralsResponse):
        return "OK", {"referrals": str(len(response.referrals))}
    if isinstance(response, pb.IdentifyResponse):
        details = {"faces": str(len(response.faces))}
        if response.HasField("target_fpir"):
            # A count: the log's shape rules keep free-form numbers out.
            details["target_fpir_ppm"] = str(round(response.target_fpir * 1_000_000))
        return pb.Decision.Name(response.decision), details
    if isinstance(response, pb.Gallery) and response.HasField("calibration"):
        return "OK", {"impostor_searches": str(response.calibration.impostor_searches)}
    if isinstance(response, pb.RenewTemplateProtectionResponse):
        return "OK", {
            "protection_version": str(response.protection_version),
            "galleries": str(len(response.galleries)),
        }
    if isinstance(response, pb.VerifyResponse):
        return pb.Decision.Name(response.decision), {}
    if isinstance(response, tpb.VerifyDocumentResponse):
        return pb.Decision.Name(response.decision), _document_outcome(response)
    if isinstance(response, pb.ConfirmMatchResponse):
        # Four eyes: the entry says whether this confirmation was the first or completed it.
        return "OK", {"hit_state": _enum_name(pb.HitState, response.state)}
    if isinstance(response, pb.DismissMatchResponse):
        return "OK", {"hit_state": _enum_name(pb.HitState, response.state)}
    if isinstance(response, pb.ListKeptHitsResponse):
        return "OK", {"hits": str(len(response.hits))}
    if isinstance(response, adpb.IssuedCertificate):
        # What names the certificate (as `safepassage pki issue` logs it), never its key.
        issued = response.certificate
        return "OK", {"client_id": issued.client_id, "role": issued.role, "serial": issued.serial}
    if isinstance(response, adpb.SignedAuthorisation):
        # Which authorisation the administrator had signed, and by which authority certificate.
        return "OK", {
            "authorisation": response.authorisation_id,
            "issued_by": response.issued_by,
            "signer_serial": response.signer_serial,
            "expires": response.expires.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    if isinstance(response, adpb.RevokeCertificateResponse):
        return "OK", {"revoked": str(len(response.serials))}
    if isinstance(response, pb.BulkInsertResponse):
        return "OK", {"inserted": str(response.inserted), "failed": str(response.failed)}
    if isinstance(response, pb.IdentifyStreamResponse):
        # The request id and "replayed" let an auditor count the searches made per query.
        details = _request_details(response.request_id, pseudonyms)
        if response.WhichOneof("outcome") == "error":
            code = response.error.code
            return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN"), details
        details["faces"] = str(len(response.result.faces))
        if response.probe_id:
            # The id is the handle a hit is confirmed by: the log links hit and confirmation by pseudonym.
            details["probe_hmac_sha256"] = pseudonyms.probe(response.probe_id)
        if response.replayed:
            details["replayed"] = "true"
        return pb.Decision.Name(response.result.decision), details
    return "OK", {}


def decision_details(request: pb.RecordDecisionRequest, pseudonyms: LogPseudonyms) -> dict[str, str]:
    """An officer's recorded decision as its entry shows it: the codes as written (enum names), the
    candidate and the free-text note only as keyed pseudonyms, so the log never holds either."""
    details = {
        "search": _enum_name(pb.SearchKind, request.search),
        "service_decision": _enum_name(pb.Decision, request.service_decision),
        "decision": _enum_name(pb.ReviewDecision, request.decision),
        "reason": _enum_name(pb.ReviewReason, request.reason),
    }
    if request.reference_id:
        details["reference_hmac_sha256"] = pseudonyms.reference(request.reference_id)
    if request.note:
        details["note_hmac_sha256"] = pseudonyms.note(request.note)
    return details


def document_decision_details(
    request: tpb.RecordDocumentDecisionRequest, pseudonyms: LogPseudonyms
) -> dict[str, str]:
    """An officer's decision on a chip check as its entry shows it: the codes (enum names), the check
    id where it has a check id's shape (so the entry joins the check's), the note by pseudonym."""
    details = {
        "service_decision": _enum_name(pb.Decision, request.service_decision),
        "passive_authentication": _enum_name(tpb.PassiveAuthenticationStatus, request.passive_authentication),
        "decision": _enum_name(pb.ReviewDecision, request.decision),
        "reason": _enum_name(pb.ReviewReason, request.reason),
    }
    if CHECK_ID.fullmatch(request.check_id):
        details["check_id"] = request.check_id
    if request.note:
        details["note_hmac_sha256"] = pseudonyms.note(request.note)
    return details


def _document_outcome(response: tpb.VerifyDocumentResponse) -> dict[str, str]:
    """A chip verification's entry: what the faces showed and what passive authentication said."""
    proof = response.passive_authentication
    details = {
        "face_decision": "MATCH" if response.face_match else "NO_MATCH",
        "passive_authentication": _enum_name(tpb.PassiveAuthenticationStatus, proof.status),
        "face_record_format": _token(response.face_record_format),
        "image_format": _token(response.image_format),
    }
    if CHECK_ID.fullmatch(response.check_id):
        details["check_id"] = response.check_id
    if proof.status == tpb.PA_FAILED:
        details["pa_failure"] = _enum_name(tpb.PassiveAuthenticationFailure, proof.failure)
    return details


def _token(text: str) -> str:
    """Our own format names ("ISO/IEC 39794-5") in the log's one-case token shape (ISO_IEC_39794_5)."""
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")[:64] or "UNKNOWN"


def document_details(request: tpb.VerifyDocumentRequest, pseudonyms: LogPseudonyms) -> dict[str, str]:
    """The document a chip verification was about, refused or not: its issuing state and number as one
    keyed pseudonym (the operator can find a passport's verifications; nobody else can), and nothing
    when no readable DG1 came with it."""
    if not request.document.dg1:
        return {}
    try:
        mrz = read_dg1(request.document.dg1)
    except TravelDocumentError:  # the servicer refuses it, saying why
        return {}
    return {"document_hmac_sha256": pseudonyms.document(mrz.issuing_state, mrz.document_number)}


def _enum_name(enum: Any, value: int) -> str:
    try:
        name: str = enum.Name(value)
    except ValueError:  # a number no version of the API defines
        return "UNKNOWN"
    return name


def _request_details(request_id: str, pseudonyms: LogPseudonyms) -> dict[str, str]:
    """A valid request id as its keyed pseudonym: the client chose the text, so it never enters the log
    as written, yet an auditor can count the answers (and replays) per id. Invalid ids: nothing."""
    if not store.REQUEST_ID.fullmatch(request_id):
        return {}
    return {"request_id_hmac_sha256": pseudonyms.request_id(request_id)}
