"""The deployment's PKI: its CA, the server's certificate, client certificates with roles, revocations.

Everything lives in one folder (default ``<data_dir>/pki``)::

    ca.pem              the CA certificate; servers and clients trust it
    ca-key.pem          the CA key (0600); only `safepassage pki` reads it, never the server
    server.pem          the server's certificate (serverAuth; SANs = the server names)
    server-key.pem      its key (0600)
    clients/ID.pem      a client's certificate (clientAuth; CN=ID, OU=role, O=SafePassage,
                        organizationIdentifier=ORG for the roles that act for an organisation)
    clients/ID-key.pem  its key (0600), in a development PKI only (see below)
    index.json          every certificate issued: serial, kind, id, role, organisation, validity,
                        fingerprint (indexes written before organisations load as ""); 0600
    revoked.json        revoked serials and when they were revoked; 0600
    DEVELOPMENT         marks a development PKI (made by the server's first run)
    .lock               advisory lock that serialises changes between processes

The folder and its clients/ folder are 0700. A client's private key is made
for the client and is not the PKI's to keep: `issue_client` hands it back
(``IssuedCert.key_pem``) and keeps no copy, and `safepassage pki issue
--bundle` writes it, with the certificates, to a folder for the client
(client_bundle.py). Only a development PKI (``Pki.init(development=True)``, the
server's first run with ``tls.generate_dev_certs``) keeps its clients' keys in
clients/, so that the command line on the same machine works without setup.

A client's role is its certificate's OU, its id the CN and its organisation,
if any, the organizationIdentifier (see identity.py). NGO caseworkers and
kiosks are issued only with an organisation: the server refuses theirs without.
The server needs only ca.pem, server.pem, server-key.pem and revoked.json, so
the CA key may be kept on another machine. gRPC checks chains and validity at
the handshake only; a connection outlives both, so `RevocationList` is made
to be asked on every call, and re-reads revoked.json as soon as it changes:
a revocation takes effect on the next call, with no restart.

Every change is written atomically (temporary file, fsync, rename, fsync of
the folder), so a reader never sees half a file.

    PkiError (SafePassageError)
    ├── InvalidCertificateRequest (InvalidInput)        bad client id, role, organisation, names or validity
    ├── PkiAlreadyExists          (AlreadyExists)       init on an initialised folder; a live cert for the id
    ├── CertificateNotFound       (NotFound)            revoke of an unknown client id or serial
    ├── PkiNotInitialised         (FailedPrecondition)  no CA in the folder; key readable by others
    ├── RevocationsUnreadable     (Unavailable)         revoked.json cannot be read: fail closed
    └── PkiCorrupt                (DataIntegrityError)  a PKI file is not what this module writes
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime
import enum
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SafePassageError,
    Unavailable,
)
from safepassage.core.private_files import make_private_folder, read_private
from safepassage.server.identity import ORGANISATION_ID, ORGANISATION_ROLES, Role

log = logging.getLogger(__name__)

ORGANIZATION = "SafePassage"
CA_DAYS = 3652  # ten years
MAX_CLIENT_DAYS = 3650
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
# Issued certificates start a little in the past so that a client whose clock
# is slightly behind can use a certificate issued a moment ago.
CLOCK_SKEW = datetime.timedelta(minutes=5)

CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_DNS_NAME = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_FORMAT_VERSION = 1
_MAX_PEM = 64 * 1024  # a PEM key is a few hundred bytes
_DEVELOPMENT_NOTE = (
    b"A development PKI, made by the server's first run (tls.generate_dev_certs).\n"
    b"It keeps its clients' private keys in clients/ so that the command line on this machine\n"
    b"works without setup. Never use it for a deployment: run `safepassage pki init` there,\n"
    b"and hand each client its key with `safepassage pki issue ... --bundle PATH`.\n"
)

# Called with an operation name ("certificate.issue", "certificate.revoke",
# "pki.init") and metadata that names the certificate, never a key.
ChangeHook = Callable[[str, dict[str, str]], None]


class PkiError(SafePassageError):
    """Root of the PKI's errors."""


class InvalidCertificateRequest(PkiError, InvalidInput):
    pass


class PkiAlreadyExists(PkiError, AlreadyExists):
    pass


class CertificateNotFound(PkiError, NotFound):
    pass


class PkiNotInitialised(PkiError, FailedPrecondition):
    pass


class RevocationsUnreadable(PkiError, Unavailable):
    pass


class PkiCorrupt(PkiError, DataIntegrityError):
    pass


class CertificateKind(enum.StrEnum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class PkiPaths:
    """Where each file of a PKI folder is."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def clients(self) -> Path:
        return self.folder / "clients"

    @property
    def index(self) -> Path:
        return self.folder / "index.json"

    @property
    def revoked(self) -> Path:
        return self.folder / "revoked.json"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"

    @property
    def development(self) -> Path:
        return self.folder / "DEVELOPMENT"

    def client_cert(self, client_id: str) -> Path:
        return self.clients / f"{client_id}.pem"

    def client_key(self, client_id: str) -> Path:
        return self.clients / f"{client_id}-key.pem"


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
        now = now or _now()
        if self.revoked:
            return "revoked"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not yet valid"
        return "valid"


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


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime.datetime
    client_id: str | None  # None when the serial is not in the index


def format_serial(serial: int) -> str:
    """A serial as the index, the CLI and `openssl x509 -serial` show it: upper-case hex."""
    return f"{serial:X}"


def parse_serial(text: str) -> int:
    """A serial from hex text, with or without 0x and colons; raises InvalidCertificateRequest."""
    cleaned = text.strip().replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return int(cleaned, 16)
    except ValueError:
        raise InvalidCertificateRequest(f"{text!r} is not a hexadecimal serial number") from None


def check_client_id(client_id: str) -> str:
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidCertificateRequest(
            f"client id {client_id!r} is not an opaque id: 1-63 characters of a-z 0-9 . _ -,"
            " starting with a letter or digit"
        )
    # clients/ID-key.pem must never be the certificate of another client.
    if client_id.endswith("-key"):
        raise InvalidCertificateRequest(f"client id {client_id!r} may not end in '-key'")
    return client_id


def check_organisation(role: Role, organisation: str | None) -> str:
    """The organisation id for a certificate of `role` ("" for none), or InvalidCertificateRequest.

    NGO caseworkers and kiosks act for one organisation, and the server binds
    them to its records by this id: issuing them without one is refused.
    """
    if organisation is None or organisation == "":
        if role in ORGANISATION_ROLES:
            raise InvalidCertificateRequest(
                f"the role {role.value} needs an organisation (--organisation ORG, e.g. la-strada)"
            )
        return ""
    if not ORGANISATION_ID.fullmatch(organisation):
        raise InvalidCertificateRequest(
            f"organisation {organisation!r} is not an organisation id: 2-63 characters of a-z 0-9 -,"
            " starting with a letter or digit"
        )
    return organisation


def role_of(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise InvalidCertificateRequest(f"unknown role {value!r} (roles: {roles})") from None


def fingerprint_of(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def read_ca(folder: Path) -> x509.Certificate:
    """The CA certificate of a PKI folder (what a server checks client certificates against)."""
    path = PkiPaths(folder).ca_cert
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiNotInitialised(
            f"no CA certificate at {path}; run `safepassage pki init --pki-dir {folder}`"
        ) from None
    except OSError as error:
        raise PkiNotInitialised(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise PkiCorrupt(f"{path} is not a PEM certificate") from None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _time(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat(timespec="seconds")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the folder is synced.
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _revocations_json(entries: dict[int, datetime.datetime]) -> bytes:
    document = {
        "version": _FORMAT_VERSION,
        "revoked": [
            {"serial": format_serial(serial), "revoked_at": _iso(at)}
            for serial, at in sorted(entries.items(), key=lambda item: item[1])
        ],
    }
    return json.dumps(document, indent=1).encode() + b"\n"


def _parse_revocations(data: bytes, path: Path) -> dict[int, datetime.datetime]:
    try:
        document = json.loads(data)
        if document.get("version") != _FORMAT_VERSION:
            raise ValueError("unknown version")
        return {parse_serial(entry["serial"]): _time(entry["revoked_at"]) for entry in document["revoked"]}
    except (ValueError, KeyError, TypeError, AttributeError, InvalidCertificateRequest):
        raise PkiCorrupt(f"{path} is not a revocation list") from None


class RevocationList:
    """The revoked serials of a PKI, re-read whenever revoked.json changes.

    `is_revoked` costs one fstat per call while the file is unchanged. The file
    is only ever replaced (a new inode) and only grows, so any change shows in
    the (inode, size, mtime) key even within one mtime tick. A missing or
    unreadable file fails closed: every check raises rather than answer "not
    revoked" from nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._refresh()

    @classmethod
    def open(cls, pki_folder: Path) -> RevocationList:
        return cls(PkiPaths(pki_folder).revoked)

    def _stat_key(self, stat: os.stat_result) -> tuple[int, int, int, int]:
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def _refresh(self) -> frozenset[int]:
        try:
            key = self._stat_key(os.stat(self.path))
        except OSError as error:
            raise RevocationsUnreadable(
                f"cannot read the revocation list {self.path}: {error.strerror}"
            ) from None
        if key == self._key:
            return self._serials
        with self._lock:
            try:
                with open(self.path, "rb") as file:
                    # Key and content from the same open file: a rename in
                    # between is seen as a change on the next call.
                    key = self._stat_key(os.fstat(file.fileno()))
                    if key == self._key:
                        return self._serials
                    data = file.read()
            except OSError as error:
                raise RevocationsUnreadable(
                    f"cannot read the revocation list {self.path}: {error.strerror}"
                ) from None
            serials = frozenset(_parse_revocations(data, self.path))
            if self._key is not None:
                log.info("revocation list reloaded: %d revoked certificates", len(serials))
            self._serials, self._key = serials, key
            return serials

    def is_revoked(self, serial: int) -> bool:
        return serial in self._refresh()

    def serials(self) -> frozenset[int]:
        return self._refresh()


def _name(common_name: str, role: Role | None = None, organisation: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organisation))
    if role is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not _DNS_NAME.fullmatch(name):
                raise InvalidCertificateRequest(
                    f"server name {name!r} is neither a DNS name nor an IP"
                ) from None
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


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
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

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
        san = _san(server_names)
        make_private_folder(paths.clients)
        with _locked(paths):
            if paths.ca_cert.exists():  # another process won the race
                raise PkiAlreadyExists(f"{folder} already holds a PKI")
            now = _now()
            ca_key = ec.generate_private_key(ec.SECP256R1())
            # A random suffix tells deployments' CAs apart in issuer names and logs.
            ca_name = _name(f"SafePassage CA {secrets.token_hex(4)}")
            ca_cert = (
                x509.CertificateBuilder()
                .subject_name(ca_name)
                .issuer_name(ca_name)
                .public_key(ca_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW)
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            write_atomic(paths.index, _index_json([]))
            write_atomic(paths.revoked, _revocations_json({}))
            write_atomic(paths.ca_key, _pem_key(ca_key), 0o600)
            if development:
                write_atomic(paths.development, _DEVELOPMENT_NOTE)
            # ca.pem last: its presence is what marks the folder as initialised.
            write_atomic(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        pki = cls(folder, ca_cert, ca_key, on_change, development=development)
        pki._changed(
            "pki.init", {"ca_fingerprint": fingerprint_of(ca_cert), "not_after": _iso(_not_after(ca_cert))}
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
        pem = read_private(paths.ca_key, "CA key", limit=_MAX_PEM, error=PkiNotInitialised)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise PkiCorrupt(f"{paths.ca_key} is not a PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != ca_cert.public_key():
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
        check_client_id(client_id)
        checked_role = role_of(role)
        checked_organisation = check_organisation(checked_role, organisation)
        not_before, not_after = self._validity(days, valid_from, valid_until)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(client_id, checked_role, checked_organisation)
        builder = self._leaf(subject, key, not_before, not_after).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        with _locked(self.paths):
            records = self._read_index()
            revoked = self._read_revoked()
            now = _now()
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
            record = _record_of(
                certificate, CertificateKind.CLIENT, client_id, checked_role, now, checked_organisation
            )
            self._commit_issue(records, record)
            cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
            key_pem = _pem_key(key)
            make_private_folder(self.paths.clients)
            cert_path = self.paths.client_cert(client_id)
            key_path = self.paths.client_key(client_id) if self._keeps(keep_key) else None
            if key_path is not None:
                write_atomic(key_path, key_pem, 0o600)
            write_atomic(cert_path, cert_pem, 0o644)
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
        return self._issue_server(_san(server_names), list(server_names), days)

    def _issue_server(self, san: x509.SubjectAlternativeName, names: Sequence[str], days: int) -> IssuedCert:
        not_before, not_after = self._validity(days, None, None)
        key = ec.generate_private_key(ec.SECP256R1())
        common_name = names[0][:64]
        certificate = (
            self._leaf(_name(common_name), key, not_before, not_after)
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        key_pem = _pem_key(key)
        with _locked(self.paths):
            records = self._read_index()
            record = _record_of(certificate, CertificateKind.SERVER, common_name, None, _now())
            self._commit_issue(records, record)
            write_atomic(self.paths.server_key, key_pem, 0o600)
            write_atomic(self.paths.server_cert, cert_pem, 0o644)
        return IssuedCert(record, cert_pem, key_pem, self.paths.server_cert, self.paths.server_key)

    def _validity(
        self, days: int, valid_from: datetime.datetime | None, valid_until: datetime.datetime | None
    ) -> tuple[datetime.datetime, datetime.datetime]:
        if valid_until is None and not 1 <= days <= MAX_CLIENT_DAYS:
            raise InvalidCertificateRequest(f"validity must be 1 to {MAX_CLIENT_DAYS} days, not {days}")
        now = _now()
        not_before = valid_from or now - CLOCK_SKEW
        not_after = valid_until or now + datetime.timedelta(days=days)
        if not_after <= not_before:
            raise InvalidCertificateRequest("a certificate must end after it starts")
        if not_after > _not_after(self.ca_cert):
            raise InvalidCertificateRequest(
                f"a certificate may not outlive the CA (valid until {_iso(_not_after(self.ca_cert))})"
            )
        return not_before, not_after

    def _leaf(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
        )

    def _commit_issue(self, records: builtins.list[CertificateRecord], record: CertificateRecord) -> None:
        # The hook runs before the certificate is recorded or written: if the
        # transparency log cannot take it, no usable certificate exists. (A
        # logged certificate whose files failed to appear is harmless.)
        self._changed("certificate.issue", _metadata(record))
        # The index before the files: a certificate on disk is always revocable by id.
        write_atomic(self.paths.index, _index_json([*records, record]))

    # -- revoking and listing ----------------------------------------------------------------

    def revoke(self, target: int | str) -> builtins.list[Revocation]:
        """Revoke a serial (int), or a client id's certificates / a hex serial (str).

        Returns what this call revoked: empty when everything named was
        already revoked. An int serial missing from the index is still
        recorded (a certificate issued before the index was lost stays
        revocable); a str must name a client id or serial in the index.
        """
        with _locked(self.paths):
            records = self._read_index()
            revoked = self._read_revoked()
            targets = self._resolve(target, records)
            now = _now()
            fresh = [
                Revocation(serial, now, record.client_id if record else None)
                for serial, record in targets
                if serial not in revoked
            ]
            if fresh:
                revoked.update({r.serial: now for r in fresh})
                write_atomic(self.paths.revoked, _revocations_json(revoked))
        by_serial = {r.serial: r for r in records}
        for revocation in fresh:
            # After the write, unlike issue: a revocation the log missed still
            # protects; one logged but not in force would mislead the auditors.
            record = by_serial.get(revocation.serial)
            metadata = _metadata(record) if record else {"serial": format_serial(revocation.serial)}
            self._changed("certificate.revoke", metadata)
        return fresh

    def _resolve(
        self, target: int | str, records: builtins.list[CertificateRecord]
    ) -> builtins.list[tuple[int, CertificateRecord | None]]:
        by_serial = {r.serial: r for r in records}
        if isinstance(target, int):
            return [(target, by_serial.get(target))]
        by_id = [r for r in records if r.kind is CertificateKind.CLIENT and r.client_id == target]
        try:
            serial: int | None = parse_serial(target)
        except InvalidCertificateRequest:
            serial = None
        as_serial = by_serial.get(serial) if serial is not None else None
        if by_id and as_serial is not None:
            raise InvalidCertificateRequest(
                f"{target!r} is both a client id and a serial; pass the serial as 0x{target}"
            )
        if by_id:
            return [(r.serial, r) for r in by_id]
        if as_serial is not None:
            return [(as_serial.serial, as_serial)]
        raise CertificateNotFound(f"no client id or certificate serial {target!r} in the index")

    def list(self) -> builtins.list[CertificateRecord]:
        """Every certificate issued, oldest first, with its revocation time if revoked."""
        revoked = self._read_revoked()
        return [_with_revocation(record, revoked.get(record.serial)) for record in self._read_index()]

    # -- files -------------------------------------------------------------------------------

    def _changed(self, operation: str, metadata: dict[str, str]) -> None:
        if self.on_change is not None:
            self.on_change(operation, metadata)

    def _read_index(self) -> builtins.list[CertificateRecord]:
        path = self.paths.index
        try:
            document = json.loads(path.read_bytes())
            if document.get("version") != _FORMAT_VERSION:
                raise ValueError("unknown version")
            return [_parse_record(entry) for entry in document["certificates"]]
        except OSError as error:
            raise PkiNotInitialised(f"cannot read the certificate index {path}: {error.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError, InvalidCertificateRequest):
            raise PkiCorrupt(f"{path} is not a certificate index") from None

    def _read_revoked(self) -> dict[int, datetime.datetime]:
        path = self.paths.revoked
        try:
            data = path.read_bytes()
        except OSError as error:
            raise RevocationsUnreadable(f"cannot read the revocation list {path}: {error.strerror}") from None
        return _parse_revocations(data, path)


@contextmanager
def _locked(paths: PkiPaths) -> Iterator[None]:
    """Serialise read-modify-write cycles between processes (two CLI runs, a server)."""
    descriptor = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _not_after(certificate: x509.Certificate) -> datetime.datetime:
    return certificate.not_valid_after_utc


def _record_of(
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


def _metadata(record: CertificateRecord) -> dict[str, str]:
    return {
        "kind": record.kind.value,
        "client_id": record.client_id,
        "role": record.role.value if record.role else "",
        "organisation": record.organisation,
        "serial": format_serial(record.serial),
        "not_after": _iso(record.not_after),
    }


def _index_json(records: Sequence[CertificateRecord]) -> bytes:
    entries: list[dict[str, Any]] = [
        {
            "serial": format_serial(r.serial),
            "kind": r.kind.value,
            "client_id": r.client_id,
            "role": r.role.value if r.role else None,
            "organisation": r.organisation or None,
            "not_before": _iso(r.not_before),
            "not_after": _iso(r.not_after),
            "fingerprint": r.fingerprint,
            "issued_at": _iso(r.issued_at),
        }
        for r in records
    ]
    return json.dumps({"version": _FORMAT_VERSION, "certificates": entries}, indent=1).encode() + b"\n"


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
        not_before=_time(entry["not_before"]),
        not_after=_time(entry["not_after"]),
        fingerprint=str(entry["fingerprint"]),
        issued_at=_time(entry["issued_at"]),
        organisation=organisation,
    )
