"""The deployment's PKI folder: where each file is, how it is changed, and the PKI's errors.

Everything lives in one folder (default ``<data_dir>/pki``)::

    ca.pem              the CA certificate; servers and clients trust it
    ca-key.pem          the CA key (0600); only `safepassage pki` reads it, never the server
    server.pem          the server's certificate (serverAuth; SANs = the server names)
    server-key.pem      its key (0600)
    console.pem         the console's certificate (clientAuth; CN=console, OU=console), which the server
                        pins: only it may forward a person's certificate (safepassage.server.forwarding)
    console-key.pem     its key (0600)
    clients/ID.pem      a client's certificate (clientAuth; CN=ID, OU=role, O=SafePassage,
                        organizationIdentifier=ORG for the roles that act for an organisation)
    clients/ID-key.pem  its key (0600), in a development PKI only (safepassage.server.pki_issuance)
    index.json          every certificate issued (safepassage.server.certificate_index); 0600
    revoked.json        revoked serials and when they were revoked (safepassage.server.revocation); 0600
    DEVELOPMENT         marks a development PKI (made by the server's first run)
    .lock               advisory lock that serialises changes between processes

The folder and its clients/ folder are 0700. The server needs only ca.pem,
server.pem, server-key.pem and revoked.json, so the CA key may be kept on
another machine. Every change is written atomically (safepassage.core.atomic_file:
temporary file, fsync, rename, fsync of the folder), so a reader never sees half
a file, and every read-modify-write cycle holds the folder's lock.

    PkiError (SafePassageError)
    ├── InvalidCertificateRequest (InvalidInput)        bad client id, role, organisation, names or validity
    ├── PkiAlreadyExists          (AlreadyExists)       init on an initialised folder; a live cert for the id
    ├── CertificateNotFound       (NotFound)            revoke of an unknown client id or serial
    ├── PkiNotInitialised         (FailedPrecondition)  no CA in the folder; key readable by others
    ├── RevocationsUnreadable     (Unavailable)         revoked.json cannot be read: fail closed
    └── PkiCorrupt                (DataIntegrityError)  a PKI file is not what these modules write
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SafePassageError,
    Unavailable,
)

__all__ = [
    "FORMAT_VERSION",
    "CertificateNotFound",
    "InvalidCertificateRequest",
    "PkiAlreadyExists",
    "PkiCorrupt",
    "PkiError",
    "PkiNotInitialised",
    "PkiPaths",
    "RevocationsUnreadable",
    "format_serial",
    "iso",
    "locked",
    "parse_serial",
    "parse_time",
    "read_ca",
    "utc_now",
]

# The version of index.json and revoked.json.
FORMAT_VERSION = 1


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
    def console_cert(self) -> Path:
        return self.folder / "console.pem"

    @property
    def console_key(self) -> Path:
        return self.folder / "console-key.pem"

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


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_time(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat(timespec="seconds")


@contextmanager
def locked(paths: PkiPaths) -> Iterator[None]:
    """Serialise read-modify-write cycles between processes (two CLI runs, a server)."""
    descriptor = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
