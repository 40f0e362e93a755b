"""Who is calling: the role and identity a client's certificate proves.

Every client presents a certificate issued by the deployment's CA. Its
subject's organisational unit (OU) holds the role, its common name (CN) the
client's account or device id (an opaque id such as ``officer-0042`` or
``cam-gate-3``, never a person's name). The serial number identifies the
certificate for revocation.

Certificates of NGO caseworkers and kiosks also name the organisation the
client acts for, in the subject's organizationIdentifier (OID 2.5.4.97; O
stays "SafePassage"): an id such as ``la-strada`` that matches
`ORGANISATION_ID`. It binds the client to that organisation's records, so a
caseworker of one NGO cannot act on another's. Other roles may carry one.
"""

from __future__ import annotations

import enum
import re
from contextvars import ContextVar
from dataclasses import dataclass

# An organisation id: lower-case letters, digits and hyphens, 2-63 characters,
# not starting with a hyphen (e.g. "la-strada"). An id, never a display name.
ORGANISATION_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


class Role(enum.StrEnum):
    OFFICER = "officer"
    CCTV_EDGE = "cctv_edge"
    KIOSK = "kiosk"
    NGO_CASEWORKER = "ngo_caseworker"
    AUDITOR = "auditor"
    ADMIN = "admin"


# The roles that act for one organisation: their certificates must name it.
ORGANISATION_ROLES = frozenset({Role.NGO_CASEWORKER, Role.KIOSK})


@dataclass(frozen=True)
class Caller:
    """An authenticated client."""

    client_id: str  # the certificate's CN
    role: Role
    serial: int  # the certificate's serial number
    fingerprint: str  # sha256 of the certificate (DER), hex
    # The certificate's organizationIdentifier ("" when it has none). Always
    # set for ngo_caseworker and kiosk: authentication refuses them without one.
    organisation: str = ""
    # "console" when the console forwarded this person's certificate (safepassage/server/forwarding.py);
    # "" for a direct caller. Decisions and limits are the person's either way; the log notes the door.
    via: str = ""

    @property
    def label(self) -> str:
        """How logs and the transparency log name this caller: role and id, no personal data."""
        return f"{self.role.value}:{self.client_id}"


# The caller of the RPC being served, set by the access interceptor for the
# servicer (which runs in the same thread, or generator, as the interceptor's wrapper).
CURRENT_CALLER: ContextVar[Caller] = ContextVar("safepassage_caller")


def current_caller() -> Caller:
    try:
        return CURRENT_CALLER.get()
    except LookupError:
        raise RuntimeError("no authenticated caller: the access interceptor did not run") from None
