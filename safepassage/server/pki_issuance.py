"""Issuing the deployment's certificates: the CA, the server's certificate, client certificates with roles.

`Pki` is a PKI folder (safepassage.server.pki_folder) opened with its CA key, which only
`safepassage pki` and a development server's first run read. A client's role is its certificate's
OU, its id the CN and its organisation, if any, the organizationIdentifier (see identity.py). NGO
caseworkers and kiosks are issued only with an organisation: the server refuses theirs without.

A client's private key is made for the client and is not the PKI's to keep: `issue_client` hands it
back (``IssuedCert.key_pem``) and keeps no copy, and `safepassage pki issue --bundle` writes it, with
the certificates, to a folder for the client (client_bundle.py). Only a development PKI
(``Pki.init(development=True)``, the server's first run with ``tls.generate_dev_certs``) keeps its
clients' keys in clients/, so that the command line on the same machine works without setup.

Every issue is recorded in the certificate index (safepassage.server.certificate_index) before its
files are written, and told to the change hook (the transparency log) before either; revoking and
the revocation check are in safepassage.server.revocation.
"""

from __future__ import annotations

import builtins
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from safepassage.core import atomic_file, key_files
from safepassage.core.certificates import holds_key, to_pem
from safepassage.core.private_files import make_private_folder
from safepassage.server import certificate_profiles as profiles
from safepassage.server.certificate_index import (
    CertificateKind,
    CertificateRecord,
    ChangeHook,
    certificates,
    change_metadata,
    fingerprint_of,
    read_index,
    record_of,
    write_index,
)
from safepassage.server.identity import Role
from safepassage.server.pki_folder import (
    InvalidCertificateRequest,
    PkiAlreadyExists,
    PkiCorrupt,
    PkiNotInitialised,
    PkiPaths,
    format_serial,
    iso,
    locked,
    read_ca,
    utc_now,
)
from safepassage.server.revocation import Revocation, RevocationList, read_revoked, revoke, write_revoked

__all__ = ["DEFAULT_SERVER_NAMES", "MAX_CLIENT_DAYS", "IssuedCert", "Pki"]

log = logging.getLogger(__name__)

MAX_CLIENT_DAYS = 3650
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")

_DEVELOPMENT_NOTE = (
    b"A development PKI, made by the server's first run (tls.generate_dev_certs).\n"
    b"It keeps its clients' private keys in clients/ so that the command line on this machine\n"
    b"works without setup. Never use it for a deployment: run `safepassage pki init` there,\n"
    b"and hand each client its key with `safepassage pki issue ... --bundle PATH`.\n"
)


@dataclass(frozen=True)
class IssuedCert:
    """A certificate just issued, with its key, where the certificate was written and the key, if kept."""

    record: CertificateRecord
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    cert_path: Path
    key_path: Path | None  # None: the key was not written to the PKI folder (only key_pem has it)

    @property
    def serial(self) -> int:
        return self.record.serial

    @property
    def client_id(self) -> str:
        return self.record.client_id

    @property
    def role(self) -> Role | None:
        return self.record.role

    @property
    def organisation(self) -> str:
        return self.record.organisation

    @property
    def fingerprint(self) -> str:
        return self.record.fingerprint

    @property
    def not_after(self) -> datetime.datetime:
        return self.record.not_after


class Pki:
    """A PKI folder opened for issuing and revoking; needs the CA key."""

    def __init__(
        self,
        folder: Path,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        on_change: ChangeHook | None = None,
        *,
        development: bool = False,
    ) -> None:
        self.paths = PkiPaths(folder)
        self.ca_cert = ca_cert
        self._ca_key = ca_key
        self.on_change = on_change
        # A development PKI keeps its clients' keys in clients/ (see the module's docstring).
        self.development = development

    @property
    def folder(self) -> Path:
        return self.paths.folder

    @property
    def ca_pem(self) -> bytes:
        return to_pem(self.ca_cert)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        folder: Path,
        server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
        *,
        on_change: ChangeHook | None = None,
        exist_ok: bool = False,
        development: bool = False,
    ) -> Pki:
        """Create a CA, a server certificate and empty index and revocation list in `folder`.

        An existing CA is never replaced (every certificate it issued would
        stop working): with exist_ok the folder is opened, else it is an error.
        `development` marks the folder as a development PKI, which keeps the
        keys of the clients it issues in clients/.
        """
        paths = PkiPaths(folder)
        if paths.ca_cert.exists():
            if exist_ok:
                return cls.open(folder, on_change=on_change)
            raise PkiAlreadyExists(f"{folder} already holds a PKI (its CA is {paths.ca_cert})")
        if not server_names:
            raise InvalidCertificateRequest("at least one server name is needed")
        san = profiles.server_names(server_names)
        make_private_folder(paths.clients)
        with locked(paths):
            if paths.ca_cert.exists():  # another process won the race
                raise PkiAlreadyExists(f"{folder} already holds a PKI")
            ca_key = profiles.new_key()
            ca_cert = profiles.ca_certificate(ca_key, utc_now())
            write_index(paths, [])
            write_revoked(paths, {})
            atomic_file.replace(paths.ca_key, key_files.private_pem(ca_key), mode=0o600)
            if development:
                atomic_file.replace(paths.development, _DEVELOPMENT_NOTE)
            # ca.pem last: its presence is what marks the folder as initialised.
            atomic_file.replace(paths.ca_cert, to_pem(ca_cert), mode=0o644)
        pki = cls(folder, ca_cert, ca_key, on_change, development=development)
        pki._changed(
            "pki.init", {"ca_fingerprint": fingerprint_of(ca_cert), "not_after": iso(_not_after(ca_cert))}
        )
        pki._issue_server(san, list(server_names), days=365)
        log.info("initialised a PKI in %s", folder)
        return pki

    @classmethod
    def open(cls, folder: Path, *, on_change: ChangeHook | None = None) -> Pki:
        paths = PkiPaths(folder)
        ca_cert = read_ca(folder)
        if not paths.ca_key.exists():
            raise PkiNotInitialised(
                f"no CA key at {paths.ca_key}: this folder can verify certificates but not issue them"
            )
        # Refused, naming the file, if group or others may read it; a damaged key is PkiCorrupt.
        key = key_files.load_private_pem(paths.ca_key, "CA key", PkiNotInitialised, malformed=PkiCorrupt)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not holds_key(ca_cert, key):
            raise PkiCorrupt(f"{paths.ca_key} is not the key of {paths.ca_cert}")
        return cls(folder, ca_cert, key, on_change, development=paths.development.exists())

    def revocations(self) -> RevocationList:
        return RevocationList(self.paths.revoked)

    # -- issuing -----------------------------------------------------------------------------

    def issue_client(
        self,
        client_id: str,
        role: Role | str,
        days: int = 365,
        *,
        replace: bool = False,
        valid_from: datetime.datetime | None = None,
        valid_until: datetime.datetime | None = None,
        organisation: str | None = None,
        keep_key: bool | None = None,
    ) -> IssuedCert:
        """A client certificate, written to clients/ID.pem, and its new key (``key_pem``).

        The key is written to clients/ID-key.pem (0600) only if `keep_key`, which
        defaults to whether this is a development PKI: otherwise the only copy is
        the one returned, for the caller to hand to the client (client_bundle.py).

        `organisation` (an id such as ``la-strada``) goes into the subject's
        organizationIdentifier; ngo_caseworker and kiosk certificates need one,
        other roles may have one.

        A client id that still has a valid certificate is refused unless
        `replace`: the old certificate stays valid until revoked, so that a
        device can be moved to its new one first. `valid_from`/`valid_until`
        override the validity (tests make expired certificates with them).
        """
        profiles.check_client_id(client_id)
        checked_role = profiles.role_of(role)
        checked_organisation = profiles.check_organisation(checked_role, organisation)
        not_before, not_after = self._validity(days, valid_from, valid_until)
        key = profiles.new_key()
        subject = profiles.subject(client_id, checked_role, checked_organisation)
        builder = self._leaf(subject, key, not_before, not_after).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        with locked(self.paths):
            records = read_index(self.paths)
            revoked = read_revoked(self.paths)
            now = utc_now()
            live = [
                r
                for r in records
                if r.kind is CertificateKind.CLIENT
                and r.client_id == client_id
                and r.serial not in revoked
                and r.not_after >= now
            ]
            if live and not replace:
                raise PkiAlreadyExists(
                    f"client {client_id} already has a valid certificate (serial"
                    f" {format_serial(live[0].serial)}); revoke it first, or replace it (--replace)"
                )
            certificate = builder.sign(self._ca_key, hashes.SHA256())
            record = record_of(
                certificate, CertificateKind.CLIENT, client_id, checked_role, now, checked_organisation
            )
            self._commit_issue(records, record)
            cert_pem = to_pem(certificate)
            key_pem = key_files.private_pem(key)
            make_private_folder(self.paths.clients)
            cert_path = self.paths.client_cert(client_id)
            key_path = self.paths.client_key(client_id) if self._keeps(keep_key) else None
            if key_path is not None:
                atomic_file.replace(key_path, key_pem, mode=0o600)
            atomic_file.replace(cert_path, cert_pem, mode=0o644)
        return IssuedCert(record, cert_pem, key_pem, cert_path, key_path)

    def _keeps(self, keep_key: bool | None) -> bool:
        return self.development if keep_key is None else keep_key

    def stray_client_keys(self) -> builtins.list[Path]:
        """Client keys in clients/ of a PKI that keeps none: left there by an earlier version."""
        if self.development or not self.paths.clients.is_dir():
            return []
        return sorted(self.paths.clients.glob("*-key.pem"))

    def issue_server(self, server_names: Sequence[str] = DEFAULT_SERVER_NAMES, days: int = 365) -> IssuedCert:
        """A new server certificate for these names, replacing server.pem and server-key.pem.

        A running server keeps the certificate it started with until restarted.
        """
        if not server_names:
            raise InvalidCertificateRequest("at least one server name is needed")
        return self._issue_server(profiles.server_names(server_names), list(server_names), days)

    def _issue_server(self, san: x509.SubjectAlternativeName, names: Sequence[str], days: int) -> IssuedCert:
        not_before, not_after = self._validity(days, None, None)
        key = profiles.new_key()
        common_name = names[0][:64]
        certificate = (
            self._leaf(profiles.subject(common_name), key, not_before, not_after)
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        cert_pem = to_pem(certificate)
        key_pem = key_files.private_pem(key)
        with locked(self.paths):
            records = read_index(self.paths)
            record = record_of(certificate, CertificateKind.SERVER, common_name, None, utc_now())
            self._commit_issue(records, record)
            atomic_file.replace(self.paths.server_key, key_pem, mode=0o600)
            atomic_file.replace(self.paths.server_cert, cert_pem, mode=0o644)
        return IssuedCert(record, cert_pem, key_pem, self.paths.server_cert, self.paths.server_key)

    def issue_console(self, days: int = 365) -> IssuedCert:
        """The console's certificate and key (console.pem, console-key.pem), replacing any before.

        A client certificate with no role: the server pins it at start-up as the one peer that may
        forward a person's certificate (safepassage.server.forwarding), and it can do nothing alone.
        Revoke it (by serial) to shut the console out; a running server keeps the one it pinned.
        """
        not_before, not_after = self._validity(days, None, None)
        key = profiles.new_key()
        certificate = (
            self._leaf(profiles.console_subject(), key, not_before, not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        cert_pem = to_pem(certificate)
        key_pem = key_files.private_pem(key)
        with locked(self.paths):
            records = read_index(self.paths)
            record = record_of(certificate, CertificateKind.CONSOLE, profiles.CONSOLE_ID, None, utc_now())
            self._commit_issue(records, record)
            atomic_file.replace(self.paths.console_key, key_pem, mode=0o600)
            atomic_file.replace(self.paths.console_cert, cert_pem, mode=0o644)
        return IssuedCert(record, cert_pem, key_pem, self.paths.console_cert, self.paths.console_key)

    def _validity(
        self, days: int, valid_from: datetime.datetime | None, valid_until: datetime.datetime | None
    ) -> tuple[datetime.datetime, datetime.datetime]:
        if valid_until is None and not 1 <= days <= MAX_CLIENT_DAYS:
            raise InvalidCertificateRequest(f"validity must be 1 to {MAX_CLIENT_DAYS} days, not {days}")
        now = utc_now()
        not_before = valid_from or now - profiles.CLOCK_SKEW
        not_after = valid_until or now + datetime.timedelta(days=days)
        if not_after <= not_before:
            raise InvalidCertificateRequest("a certificate must end after it starts")
        if not_after > _not_after(self.ca_cert):
            raise InvalidCertificateRequest(
                f"a certificate may not outlive the CA (valid until {iso(_not_after(self.ca_cert))})"
            )
        return not_before, not_after

    def _leaf(
        self,
        name: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
    ) -> x509.CertificateBuilder:
        return profiles.leaf(name, key, self.ca_cert, self._ca_key.public_key(), not_before, not_after)

    def _commit_issue(self, records: builtins.list[CertificateRecord], record: CertificateRecord) -> None:
        # The hook runs before the certificate is recorded or written: if the
        # transparency log cannot take it, no usable certificate exists. (A
        # logged certificate whose files failed to appear is harmless.)
        self._changed("certificate.issue", change_metadata(record))
        # The index before the files: a certificate on disk is always revocable by id.
        write_index(self.paths, [*records, record])

    # -- revoking and listing (safepassage.server.revocation, safepassage.server.certificate_index) --

    def revoke(self, target: int | str) -> builtins.list[Revocation]:
        """Revoke a serial (int), or a client id's certificates or a hex serial (str); see revoke()."""
        return revoke(self.paths, target, self.on_change)

    def list(self) -> builtins.list[CertificateRecord]:
        """Every certificate issued, oldest first, with its revocation time if revoked."""
        return certificates(self.paths, read_revoked(self.paths))

    def _changed(self, operation: str, metadata: dict[str, str]) -> None:
        if self.on_change is not None:
            self.on_change(operation, metadata)


def _not_after(certificate: x509.Certificate) -> datetime.datetime:
    return certificate.not_valid_after_utc
