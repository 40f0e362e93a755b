"""Who may do what, to which purpose of gallery: the whole policy in one table.

Checked by the access interceptor before any servicer runs. Watchlist roles
can never reach a PROTECTED_IDENTITY gallery's templates: protected records
are reached only through ProtectedIdentityService, whose flows check the
holder's consent (MatchingService's template and search calls would bypass
it, so they are closed on protected galleries to every role). There, NGO
caseworkers and kiosks enrol, change consent, issue credentials and erase,
each also subject to the record policy (safepassage/enrolment/record_policy.py: the
caller's organisation, the holder's proof); caseworkers run the duplicate
check; officers and kiosks verify a holder 1:1; no
officer has any 1:N over protected records. Auditors see metadata and the
transparency log, never a search. A CCTV unit may only stream searches to a
watchlist, and only under a signed authorisation (see cctv_authorisation.py).

Thresholds belong to the gallery. A camera searches every passing face, so it
may not name a threshold or a target FPIR at all; another role may name one
only to be stricter than the gallery's own (a lower distance, a higher
similarity, whichever way the gallery's metric runs), never looser.

The console acts for people: a call it forwards is decided exactly as the person's own call would
be, and a device role's certificate is refused there, but for the NGO kiosk's holder operations
(CONSOLE_DEVICE_OPERATIONS: its kiosk mode, where every change needs the holder's proof).
An officer records their decision on an answer (RecordDecision) on the watchlists they search.

A kept CCTV hit is reviewed (confirmed, dismissed, listed in the queue) by a
role with CONFIRM_MATCH on the gallery's purpose (officers, on watchlists):
DISMISS_MATCH and LIST_KEPT_HITS have exactly its cells. Only a hit that a
camera searched under a CCTV authorisation for that gallery can be confirmed:
the kept probe records the camera and the authorisation. The probe must be
named with its own gallery (another gallery's probe is NOT_FOUND).
Confirmation takes two different people (four eyes, enforced by the probe
store: safepassage/store/probes.py). A gallery's reference images (opt-in face
crops, GET_REFERENCE_IMAGE) are shown only to the same cells.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping

from safepassage.core.errors import PermissionDenied
from safepassage.core.metric import Metric
from safepassage.matcher import GalleryPurpose
from safepassage.server.identity import Caller, Role

W = frozenset({GalleryPurpose.WATCHLIST})
P = frozenset({GalleryPurpose.PROTECTED_IDENTITY})
WP = W | P


class Operation(enum.StrEnum):
    """The RPCs, by their short names."""

    CREATE_GALLERY = "CreateGallery"
    LIST_GALLERIES = "ListGalleries"
    DESCRIBE_GALLERY = "DescribeGallery"
    DELETE_GALLERY = "DeleteGallery"
    CALIBRATE_GALLERY = "CalibrateGallery"
    RENEW_TEMPLATE_PROTECTION = "RenewTemplateProtection"
    INSERT_TEMPLATE = "InsertTemplate"
    BULK_INSERT_TEMPLATES = "BulkInsertTemplates"
    DELETE_TEMPLATE = "DeleteTemplate"
    COUNT_TEMPLATES = "CountTemplates"
    IDENTIFY = "Identify"
    VERIFY = "Verify"
    IDENTIFY_STREAM = "IdentifyStream"
    CONFIRM_MATCH = "ConfirmMatch"
    DISMISS_MATCH = "DismissMatch"
    LIST_KEPT_HITS = "ListKeptHits"
    GET_REFERENCE_IMAGE = "GetReferenceImage"
    RECORD_DECISION = "RecordDecision"
    # TravelDocumentService
    VERIFY_DOCUMENT = "VerifyDocument"
    RECORD_DOCUMENT_DECISION = "RecordDocumentDecision"
    # AccessService
    DESCRIBE_CALLER = "DescribeCaller"
    # AdministrationService
    ISSUE_CERTIFICATE = "IssueCertificate"
    LIST_CERTIFICATES = "ListCertificates"
    REVOKE_CERTIFICATE = "RevokeCertificate"
    LIST_AUTHORISATIONS = "ListAuthorisations"
    SIGN_AUTHORISATION = "SignAuthorisation"
    LIST_FISHING_ALERTS = "ListFishingAlerts"
    LIST_TREE_HEADS = "ListTreeHeads"
    LIST_LOG_ENTRIES = "ListLogEntries"
    GET_CONSISTENCY_PROOF = "GetConsistencyProof"
    # CaptureService
    ASSESS_CAPTURE = "AssessCapture"
    START_LIVENESS = "StartLiveness"
    CHECK_LIVENESS = "CheckLiveness"
    # ProtectedIdentityService
    ENROL_RECORD = "EnrolRecord"
    GET_CONSENT = "GetConsent"
    CHANGE_CONSENT = "ChangeConsent"
    ISSUE_CREDENTIAL = "IssueCredential"
    CHANGE_PIN = "ChangePin"
    GET_CREDENTIAL_REVOCATIONS = "GetCredentialRevocations"
    VERIFY_HOLDER = "VerifyHolder"
    CHECK_DUPLICATE = "CheckDuplicate"
    SHARE_RECORD = "ShareRecord"
    ERASE_RECORD = "EraseRecord"
    LIST_REFERRALS = "ListReferrals"
    ACKNOWLEDGE_REFERRAL = "AcknowledgeReferral"
    ROTATE_RECORD_KEYS = "RotateRecordKeys"
    GET_PUBLIC_KEYS = "GetPublicKeys"


NGO = frozenset({Role.NGO_CASEWORKER, Role.KIOSK})

# Operations that name no gallery: the role alone decides.
GALLERY_FREE: Mapping[Operation, frozenset[Role]] = {
    Operation.LIST_GALLERIES: frozenset({Role.ADMIN, Role.AUDITOR}),
    Operation.GET_CONSENT: NGO,
    Operation.CHANGE_CONSENT: NGO,
    Operation.ISSUE_CREDENTIAL: NGO,
    Operation.CHANGE_PIN: NGO,
    # Retired credential ids (random, nothing personal), for offline readers to sync.
    Operation.GET_CREDENTIAL_REVOCATIONS: frozenset(Role),
    # The holder at a border desk, or at the NGO's kiosk to see their own record.
    Operation.VERIFY_HOLDER: frozenset({Role.OFFICER, Role.KIOSK}),
    # A traveller against their own passport's chip photo, at a desk or an e-gate kiosk (as Verify).
    Operation.VERIFY_DOCUMENT: frozenset({Role.OFFICER, Role.KIOSK}),
    # The officer's decision on a chip check, for the log (as RecordDecision on a search).
    Operation.RECORD_DOCUMENT_DECISION: frozenset({Role.OFFICER}),
    # Sharing and referrals are the caseworker's, never a self-service kiosk's.
    Operation.SHARE_RECORD: frozenset({Role.NGO_CASEWORKER}),
    Operation.ERASE_RECORD: NGO,
    Operation.LIST_REFERRALS: frozenset({Role.NGO_CASEWORKER}),
    Operation.ACKNOWLEDGE_REFERRAL: frozenset({Role.NGO_CASEWORKER}),
    Operation.ROTATE_RECORD_KEYS: frozenset({Role.ADMIN}),
    Operation.RENEW_TEMPLATE_PROTECTION: frozenset({Role.ADMIN}),
    # Public keys, for checking receipts and credentials offline.
    Operation.GET_PUBLIC_KEYS: frozenset(Role),
    # Who the caller is and what this table lets its role do (what the console offers).
    Operation.DESCRIBE_CALLER: frozenset(Role),
    # The deployment's certificates (what `safepassage pki` does on the server's host): administrators.
    Operation.ISSUE_CERTIFICATE: frozenset({Role.ADMIN}),
    Operation.LIST_CERTIFICATES: frozenset({Role.ADMIN}),
    Operation.REVOKE_CERTIFICATE: frozenset({Role.ADMIN}),
    # What the transparency log says of CCTV authorisations and fishing alerts: their overseers.
    Operation.LIST_AUTHORISATIONS: frozenset({Role.ADMIN, Role.AUDITOR}),
    Operation.LIST_FISHING_ALERTS: frozenset({Role.ADMIN, Role.AUDITOR}),
    # The transparency log itself (hashes, counts and ids), its signed heads and proofs: the same.
    Operation.LIST_TREE_HEADS: frozenset({Role.ADMIN, Role.AUDITOR}),
    Operation.LIST_LOG_ENTRIES: frozenset({Role.ADMIN, Role.AUDITOR}),
    Operation.GET_CONSISTENCY_PROOF: frozenset({Role.ADMIN, Role.AUDITOR}),
    # The quality of a webcam capture (the kiosk's prompts): the officer's before a search, the NGO
    # caseworker's before an enrolment. It scores an image and keeps nothing.
    Operation.ASSESS_CAPTURE: frozenset({Role.OFFICER, Role.NGO_CASEWORKER}),
    # The service's own head-turn check, for whoever may bring a live face to a holder proof or an
    # enrolment (server/live_capture.py): it keeps nothing but a statement only its caller can use.
    Operation.START_LIVENESS: frozenset({Role.OFFICER, Role.NGO_CASEWORKER, Role.KIOSK}),
    Operation.CHECK_LIVENESS: frozenset({Role.OFFICER, Role.NGO_CASEWORKER, Role.KIOSK}),
}

# Who reviews kept CCTV hits (confirm, dismiss, the queue): officers, on watchlists.
REVIEW_CELLS: Mapping[Role, frozenset[GalleryPurpose]] = {Role.OFFICER: W}

# Operations on one gallery: role -> the purposes it may touch.
MATRIX: Mapping[Operation, Mapping[Role, frozenset[GalleryPurpose]]] = {
    Operation.CREATE_GALLERY: {Role.ADMIN: WP},
    Operation.DELETE_GALLERY: {Role.ADMIN: WP},
    # Calibration searches a gallery with impostors or its own templates (scores are kept, no
    # identities); on protected records that would be a 1:N outside any holder's consent.
    Operation.CALIBRATE_GALLERY: {Role.ADMIN: W},
    Operation.DESCRIBE_GALLERY: {
        Role.ADMIN: WP,
        Role.AUDITOR: WP,
        Role.OFFICER: W,
        Role.CCTV_EDGE: W,
        Role.KIOSK: WP,
        Role.NGO_CASEWORKER: P,
    },
    Operation.INSERT_TEMPLATE: {Role.ADMIN: W},
    Operation.BULK_INSERT_TEMPLATES: {Role.ADMIN: W},
    Operation.DELETE_TEMPLATE: {Role.ADMIN: W},
    Operation.COUNT_TEMPLATES: {Role.ADMIN: WP, Role.AUDITOR: WP, Role.NGO_CASEWORKER: P},
    Operation.IDENTIFY: {Role.OFFICER: W},
    Operation.VERIFY: {Role.OFFICER: W, Role.KIOSK: W},
    Operation.IDENTIFY_STREAM: {Role.OFFICER: W, Role.CCTV_EDGE: W},
    # Reviewing kept CCTV hits: who may confirm may dismiss and see the queue (REVIEW_CELLS).
    Operation.CONFIRM_MATCH: REVIEW_CELLS,
    Operation.DISMISS_MATCH: REVIEW_CELLS,
    Operation.LIST_KEPT_HITS: REVIEW_CELLS,
    # A gallery's reference images (face crops, opt-in) are shown only to who reviews its hits.
    Operation.GET_REFERENCE_IMAGE: REVIEW_CELLS,
    # The officer's own decision on an answer (confirm, reject, refer, cannot decide), for the log.
    Operation.RECORD_DECISION: {Role.OFFICER: W},
    # Protected records enter only with consent, through EnrolRecord.
    Operation.ENROL_RECORD: {Role.NGO_CASEWORKER: P, Role.KIOSK: P},
    # The NGO caseworker's 1:N on protected records: only over holders who allow it, naming only
    # the caller's own organisation's records. Never a kiosk's: a self-service screen would let
    # anyone test a photo for membership.
    Operation.CHECK_DUPLICATE: {Role.NGO_CASEWORKER: P},
    # A CCTV authorisation signed on the server, where the deployment keeps the authority's key there
    # (cctv.signing_key_file): administrators, for the watchlists cameras search.
    Operation.SIGN_AUTHORISATION: {Role.ADMIN: W},
}

PROTECTED_IDENTITY_OPERATIONS = frozenset(
    {
        Operation.ENROL_RECORD,
        Operation.GET_CONSENT,
        Operation.CHANGE_CONSENT,
        Operation.ISSUE_CREDENTIAL,
        Operation.CHANGE_PIN,
        Operation.GET_CREDENTIAL_REVOCATIONS,
        Operation.VERIFY_HOLDER,
        Operation.CHECK_DUPLICATE,
        Operation.SHARE_RECORD,
        Operation.ERASE_RECORD,
        Operation.LIST_REFERRALS,
        Operation.ACKNOWLEDGE_REFERRAL,
        Operation.ROTATE_RECORD_KEYS,
        Operation.GET_PUBLIC_KEYS,
    }
)

# The roles of people: only they act through the console (safepassage/server/forwarding.py). A
# device's certificate (a camera's, a kiosk's) in a browser gets nothing there: devices call directly.
CONSOLE_ROLES = frozenset({Role.OFFICER, Role.NGO_CASEWORKER, Role.AUDITOR, Role.ADMIN})
# Except the NGO's kiosk in kiosk mode (the console's /kiosk pages, a self-service screen anyone may
# touch): through the console it reaches only the holder's own record, each change with the holder's
# proof (record_policy.py), never its other rows (a 1:1 Verify against a watchlist from a public
# screen would be a membership oracle; enrolment is the caseworker's guided form).
CONSOLE_DEVICE_OPERATIONS: Mapping[Role, frozenset[Operation]] = {
    Role.KIOSK: frozenset(
        {
            Operation.DESCRIBE_CALLER,
            Operation.GET_CONSENT,
            Operation.CHANGE_CONSENT,
            Operation.ISSUE_CREDENTIAL,
            Operation.CHANGE_PIN,
            Operation.ERASE_RECORD,
            Operation.GET_PUBLIC_KEYS,
            # The holder's card + live face + PIN: the face through the service's own head-turn check.
            Operation.VERIFY_HOLDER,
            Operation.START_LIVENESS,
            Operation.CHECK_LIVENESS,
        }
    ),
}

# Operations every authenticated client may call (health, reflection).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")


def operation_of(method: str) -> Operation | None:
    """The Operation of a full gRPC method name, None for the open services."""
    if method.startswith(OPEN_SERVICES):
        return None
    name = method.rsplit("/", 1)[-1]
    try:
        return Operation(name)
    except ValueError:
        raise PermissionDenied(f"method {method} is not in the authorisation matrix") from None


def may_call(caller: Caller, operation: Operation) -> bool:
    """Whether the role may call the operation on some purpose (checked before reading the request)."""
    if operation in GALLERY_FREE:
        return caller.role in GALLERY_FREE[operation]
    return caller.role in MATRIX[operation]


def _closed_through(caller: Caller, operation: Operation) -> bool:
    """Whether the door the call came through (the console) closes this operation to the caller's role."""
    if not caller.via or caller.role in CONSOLE_ROLES:
        return False
    return operation not in CONSOLE_DEVICE_OPERATIONS.get(caller.role, frozenset())


def check_call(caller: Caller, operation: Operation) -> None:
    if _closed_through(caller, operation):
        raise PermissionDenied(
            f"role {caller.role.value} may not act through the {caller.via}:"
            " a device calls the service directly"
        )
    if not may_call(caller, operation):
        raise PermissionDenied(f"role {caller.role.value} may not call {operation.value}")


def permissions(caller: Caller) -> dict[Operation, frozenset[GalleryPurpose]]:
    """What the caller may call: each operation with the purposes it may act on (none: names no gallery)."""
    none = frozenset[GalleryPurpose]()
    allowed = {operation: none for operation, roles in GALLERY_FREE.items() if caller.role in roles}
    for operation, cells in MATRIX.items():
        if caller.role in cells:
            allowed[operation] = cells[caller.role]
    return {op: cells for op, cells in allowed.items() if not _closed_through(caller, op)}


def check_purpose(caller: Caller, operation: Operation, gallery_id: str, purpose: GalleryPurpose) -> None:
    """Raise PermissionDenied unless the role may do `operation` on a gallery of `purpose`."""
    allowed = MATRIX.get(operation, {}).get(caller.role, frozenset())
    if purpose not in allowed:
        raise PermissionDenied(
            f"role {caller.role.value} may not call {operation.value} on gallery {gallery_id!r}"
            f" ({purpose.value} galleries)"
        )


# Searches whose requests may carry a threshold (or, Identify, a target FPIR).
THRESHOLD_OPERATIONS = frozenset({Operation.IDENTIFY, Operation.VERIFY, Operation.IDENTIFY_STREAM})
# Roles that always search at the gallery's own threshold.
GALLERY_THRESHOLD_ONLY = frozenset({Role.CCTV_EDGE})


def check_may_choose_threshold(caller: Caller, operation: Operation, gallery_id: str) -> None:
    """Raise PermissionDenied if the role may not name a threshold or target FPIR at all."""
    if caller.role in GALLERY_THRESHOLD_ONLY:
        raise PermissionDenied(
            f"role {caller.role.value} may not choose the threshold of {operation.value} on gallery"
            f" {gallery_id!r}: it searches at the gallery's own threshold (send neither threshold"
            " nor target_fpir)"
        )


def _wire(value: float) -> float:
    """The value at the API's float32 precision, so naming the gallery's own threshold is not looser."""
    try:
        result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:  # beyond float32: no request can name it
        return value
    return result


def check_stricter_threshold(
    caller: Caller, operation: Operation, gallery_id: str, metric: Metric, own: float, asked: float
) -> None:
    """Raise PermissionDenied if `asked` would match more than the gallery's own threshold `own`."""
    check_may_choose_threshold(caller, operation, gallery_id)
    looser = _wire(asked) < _wire(own) if metric.higher_is_closer else _wire(asked) > _wire(own)
    if looser:
        way = "lower" if metric.higher_is_closer else "higher"
        raise PermissionDenied(
            f"role {caller.role.value} asked {operation.value} on gallery {gallery_id!r} for a threshold"
            f" looser than the gallery's own ({way}, {metric.value}); a request may only make it stricter"
        )


def check_confirmation(
    caller: Caller, gallery_id: str, purpose: GalleryPurpose, authorisation_id: str
) -> None:
    """Raise PermissionDenied unless the caller may confirm this kept hit of `gallery_id`
    (the probe store then asks for a second, different reviewer)."""
    check_purpose(caller, Operation.CONFIRM_MATCH, gallery_id, purpose)
    if not authorisation_id:
        # Kept before hits recorded their authorisation: nothing shows a camera was allowed to search.
        raise PermissionDenied(
            f"the hit in gallery {gallery_id!r} was not kept under a CCTV authorisation;"
            " it cannot be confirmed"
        )
