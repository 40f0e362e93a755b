"""The certificate index: index.json, every certificate the PKI issued, oldest first.

Each entry holds a certificate's serial, kind (client or server), id (the CN: a client's id, or a
server certificate's first name), role, organisation, validity, fingerprint and issue time; indexes
written before certificates named organisations load them as "". The index is written before the
certificate's files (safepassage.server.pki_issuance), so a certificate on disk is always revocable
by its client id. Revocations are kept apart, in revoked.json (safepassage.server.revocation).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from safepassage.core import atomic_file
from safepassage.server.identity import ORGANISATION_ID, Role
from safepassage.server.pki_folder import (
    FORMAT_VERSION,
    InvalidCertificateRequest,
    PkiCorrupt,
    PkiNotInitialised,
    PkiPaths,
    format_serial,
    iso,
    parse_serial,
    parse_time,
    utc_now,
)

__all__ = [
    "CLIENT_ID",
    "CertificateKind",
    "CertificateRecord",
    "ChangeHook",
    "certificates",
    "change_metadata",
    "fingerprint_of",
    "read_index",
    "record_of",
    "write_index",
]

# A client's id: the CN of its certificate, and its file name in clients/.
CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

# Called with an operation name ("certificate.issue", "certificate.revoke",
# "pki.init") and metadata that names the certificate, never a key.
ChangeHook = Callable[[str, dict[str, str]], None]


class CertificateKind(enum.StrEnum):
    CLIENT = "client"
    SERVER = "server"
    # The console's own certificate: no role, so it can never be a caller (server/forwarding.py).
    CONSOLE = "console"


@dataclass(frozen=True)
class CertificateRecord:
    """One issued certificate, as the index and revoked.json know it."""

    serial: int
    kind: CertificateKind
    client_id: str  # the CN: a client's id, or a server certificate's first name
    role: Role | None  # None for server certificates
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str  # sha256 of the DER certificate, hex
    issued_at: datetime.datetime
    revoked_at: datetime.datetime | None = None
    organisation: str = ""  # the organizationIdentifier; "" for none (and in indexes from before it)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: datetime.datetime | None = None) -> str:
        """One of: revoked, expired, not yet valid, valid."""
        now = now or utc_now()
        if self.revoked:
            return "revoked"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not yet valid"
        return "valid"


def fingerprint_of(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def read_index(paths: PkiPaths) -> list[CertificateRecord]:
    """Every certificate issued, oldest first, without revocations."""
    path = paths.index
    try:
        document = json.loads(path.read_bytes())
        if document.get("version") != FORMAT_VERSION:
            raise ValueError("unknown version")
        return [_parse_record(entry) for entry in document["certificates"]]
    except OSError as error:
        raise PkiNotInitialised(f"cannot read the certificate index {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError, InvalidCertificateRequest):
        raise PkiCorrupt(f"{path} is not a certificate index") from None


def write_index(paths: PkiPaths, records: Sequence[CertificateRecord]) -> None:
    """Replace the index with `records` (atomically; the caller holds the folder's lock)."""
    atomic_file.replace(paths.index, _index_json(records))


def certificates(paths: PkiPaths, revoked: Mapping[int, datetime.datetime]) -> list[CertificateRecord]:
    """Every certificate issued, oldest first, with its revocation time if `revoked` has its serial."""
    return [_with_revocation(record, revoked.get(record.serial)) for record in read_index(paths)]


def record_of(
    certificate: x509.Certificate,
    kind: CertificateKind,
    client_id: str,
    role: Role | None,
    issued_at: datetime.datetime,
    organisation: str = "",
) -> CertificateRecord:
    return CertificateRecord(
        serial=certificate.serial_number,
        kind=kind,
        client_id=client_id,
        role=role,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint=fingerprint_of(certificate),
        issued_at=issued_at,
        organisation=organisation,
    )


def _with_revocation(record: CertificateRecord, revoked_at: datetime.datetime | None) -> CertificateRecord:
    if revoked_at is None:
        return record
    return dataclasses.replace(record, revoked_at=revoked_at)


def change_metadata(record: CertificateRecord) -> dict[str, str]:
    """What a ChangeHook is told of a certificate: what names it, never a key."""
    return {
        "kind": record.kind.value,
        "client_id": record.client_id,
        "role": record.role.value if record.role else "",
        "organisation": record.organisation,
        "serial": format_serial(record.serial),
        "not_after": iso(record.not_after),
    }


def _index_json(records: Sequence[CertificateRecord]) -> bytes:
    entries: list[dict[str, Any]] = [
        {
            "serial": format_serial(r.serial),
            "kind": r.kind.value,
            "client_id": r.client_id,
            "role": r.role.value if r.role else None,
            "organisation": r.organisation or None,
            "not_before": iso(r.not_before),
            "not_after": iso(r.not_after),
            "fingerprint": r.fingerprint,
            "issued_at": iso(r.issued_at),
        }
        for r in records
    ]
    return json.dumps({"version": FORMAT_VERSION, "certificates": entries}, indent=1).encode() + b"\n"


def _parse_record(entry: dict[str, Any]) -> CertificateRecord:
    role = entry["role"]
    # Absent from indexes written before certificates named organisations.
    organisation = entry.get("organisation") or ""
    if not isinstance(organisation, str) or (organisation and not ORGANISATION_ID.fullmatch(organisation)):
        raise ValueError("not an organisation id")
    return CertificateRecord(
        serial=parse_serial(entry["serial"]),
        kind=CertificateKind(entry["kind"]),
        client_id=str(entry["client_id"]),
        role=Role(role) if role is not None else None,
        not_before=parse_time(entry["not_before"]),
        not_after=parse_time(entry["not_after"]),
        fingerprint=str(entry["fingerprint"]),
        issued_at=parse_time(entry["issued_at"]),
        organisation=organisation,
    )
