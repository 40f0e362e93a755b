"""Who may do what, to which purpose of gallery: the whole policy in one table.

Checked by the access interceptor before any servicer runs. Watchlist roles
can never reach a PROTECTED_IDENTITY gallery: protected records are reachable
only by the enrolling NGO (its kiosks and caseworkers: enrolment, 1:1, the
duplicate check, erasure) and, with the protected-identity issue, through
the holder's own flows. Auditors see metadata and the transparency log,
never a search. A CCTV unit may only stream searches to a watchlist, and
only under a signed authorisation (see cctv_authorisation.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from matcher import GalleryPurpose
from safepassage_core.errors import PermissionDenied
from safepassage_server.identity import Caller, Role

W = frozenset({GalleryPurpose.WATCHLIST})
P = frozenset({GalleryPurpose.PROTECTED_IDENTITY})
WP = W | P


class Operation(enum.StrEnum):
    """The RPCs, by their short names."""

    CREATE_GALLERY = "CreateGallery"
    LIST_GALLERIES = "ListGalleries"
    DESCRIBE_GALLERY = "DescribeGallery"
    DELETE_GALLERY = "DeleteGallery"
    INSERT_TEMPLATE = "InsertTemplate"
    BULK_INSERT_TEMPLATES = "BulkInsertTemplates"
    DELETE_TEMPLATE = "DeleteTemplate"
    COUNT_TEMPLATES = "CountTemplates"
    IDENTIFY = "Identify"
    VERIFY = "Verify"
    IDENTIFY_STREAM = "IdentifyStream"
    CONFIRM_MATCH = "ConfirmMatch"


# Operations that name no gallery: the role alone decides.
GALLERY_FREE: Mapping[Operation, frozenset[Role]] = {
    Operation.LIST_GALLERIES: frozenset({Role.ADMIN, Role.AUDITOR}),
}

# Operations on one gallery: role -> the purposes it may touch.
MATRIX: Mapping[Operation, Mapping[Role, frozenset[GalleryPurpose]]] = {
    Operation.CREATE_GALLERY: {Role.ADMIN: WP},
    Operation.DELETE_GALLERY: {Role.ADMIN: WP},
    Operation.DESCRIBE_GALLERY: {
        Role.ADMIN: WP,
        Role.AUDITOR: WP,
        Role.OFFICER: W,
        Role.CCTV_EDGE: W,
        Role.KIOSK: WP,
        Role.NGO_CASEWORKER: P,
    },
    Operation.INSERT_TEMPLATE: {Role.ADMIN: W, Role.NGO_CASEWORKER: P, Role.KIOSK: P},
    Operation.BULK_INSERT_TEMPLATES: {Role.ADMIN: W, Role.NGO_CASEWORKER: P},
    Operation.DELETE_TEMPLATE: {Role.ADMIN: W, Role.NGO_CASEWORKER: P},
    Operation.COUNT_TEMPLATES: {Role.ADMIN: WP, Role.AUDITOR: WP, Role.NGO_CASEWORKER: P},
    # The NGO's 1:N on protected records is its duplicate check at enrolment.
    Operation.IDENTIFY: {Role.OFFICER: W, Role.NGO_CASEWORKER: P},
    Operation.VERIFY: {Role.OFFICER: W, Role.KIOSK: WP, Role.NGO_CASEWORKER: P},
    Operation.IDENTIFY_STREAM: {Role.OFFICER: W, Role.CCTV_EDGE: W},
    Operation.CONFIRM_MATCH: {Role.OFFICER: W},
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


def check_call(caller: Caller, operation: Operation) -> None:
    if not may_call(caller, operation):
        raise PermissionDenied(f"role {caller.role.value} may not call {operation.value}")


def check_purpose(caller: Caller, operation: Operation, gallery_id: str, purpose: GalleryPurpose) -> None:
    """Raise PermissionDenied unless the role may do `operation` on a gallery of `purpose`."""
    allowed = MATRIX.get(operation, {}).get(caller.role, frozenset())
    if purpose not in allowed:
        raise PermissionDenied(
            f"role {caller.role.value} may not call {operation.value} on gallery {gallery_id!r}"
            f" ({purpose.value} galleries)"
        )
