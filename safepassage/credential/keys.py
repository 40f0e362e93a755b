"""The keys of a holder credential: the issuing NGO's signing key and the readers' decryption keys.

An issuer key is Ed25519: the NGO signs every credential it issues, and any
device holding the public half checks it offline. A reader key is X25519: the
credential's sealed part (template and record id) is encrypted to the reader
keys of the agencies the NGO trusts, so a device without one learns nothing
from the QR code. Both are identified by a key id, the first 8 bytes of
SHA-256 over the raw public key, written as 16 hex digits; the id is what a
credential carries in clear, never the key.

Private keys live in PEM (PKCS#8, unencrypted) files created owner-only
(0600) and written atomically (temporary file, fsync, link into place, folder
fsync: :mod:`safepassage.core.key_files`), so a crash never leaves half a key
and two processes racing to create one end up with the same key. A private key file that group or others may
read is refused. An issuer's public PEM carries its issuer id as explanatory
text before the BEGIN line (RFC 7468 allows it), so a trust store built from
PEM files knows whom each key speaks for.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from safepassage.core import key_agreement, key_files, signing
from safepassage.core.key_agreement import AgreementKey, AgreementPublicKey
from safepassage.core.signing import SigningKey, VerifyingKey
from safepassage.credential.errors import CredentialKeyError, UnknownIssuer

__all__ = [
    "KEY_ID_SIZE",
    "IssuerKey",
    "IssuerPublicKey",
    "ReaderKey",
    "ReaderPublicKey",
    "TrustedIssuers",
    "key_id_of",
    "public_pem_path",
    "write_public_pem",
]

log = logging.getLogger(__name__)

KEY_ID_SIZE = 8
_ISSUER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ISSUER_LINE = re.compile(rb"^SafePassage issuer: (\S+)\s*$", re.MULTILINE)


def key_id_of(raw_public: bytes) -> str:
    """The key id of a raw 32-byte public key: 16 hex digits."""
    return hashlib.sha256(raw_public).digest()[:KEY_ID_SIZE].hex()


def public_pem_path(key_path: Path) -> Path:
    """Where the public PEM of the private key file ``key_path`` is written: ``<stem>.pub.pem`` beside it."""
    stem = key_path.stem if key_path.suffix in (".pem", ".key") else key_path.name
    return key_path.with_name(f"{stem}.pub.pem")


def _check_issuer_id(issuer_id: str) -> str:
    if not isinstance(issuer_id, str) or not _ISSUER_ID.fullmatch(issuer_id):
        raise CredentialKeyError("an issuer id must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return issuer_id


def _created(created: bool, what: str, path: Path) -> None:
    if created:
        log.info("created a new %s at %s", what, path)


def write_public_pem(path: Path, pem: bytes) -> None:
    """Write a public PEM (0644) atomically, replacing an older copy; public keys are meant to be shared."""
    key_files.write_public_pem(path, pem, "public key", CredentialKeyError)


class IssuerKey:
    """An NGO's Ed25519 signing key; ``repr`` shows the issuer and key ids only."""

    __slots__ = ("_private", "issuer_id", "key_id", "public")

    def __init__(self, private: SigningKey, issuer_id: str) -> None:
        self._private = signing.ED25519.private_key(private, "an issuer key", CredentialKeyError)
        self.issuer_id = _check_issuer_id(issuer_id)
        self.public = IssuerPublicKey.from_key(private.public_key(), issuer_id)
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls, issuer_id: str) -> IssuerKey:
        """A fresh key held in memory only."""
        return cls(signing.ED25519.generate(), issuer_id)

    @classmethod
    def load(cls, path: Path, issuer_id: str) -> IssuerKey:
        return cls(signing.ED25519.load(path, "issuer key", CredentialKeyError), issuer_id)

    @classmethod
    def load_or_create(cls, path: Path, issuer_id: str) -> IssuerKey:
        """Load the key at ``path``, creating it (0600, atomically) when there is none."""
        _check_issuer_id(issuer_id)
        key, created = signing.ED25519.load_or_create(path, "issuer key", CredentialKeyError)
        _created(created, "issuer key", path)
        return cls(key, issuer_id)

    def public_pem(self) -> bytes:
        return self.public.to_pem()

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature over ``message``; used by :func:`safepassage.credential.credential.issue`."""
        return signing.sign(self._private, message)

    def __repr__(self) -> str:
        return f"IssuerKey(issuer_id={self.issuer_id!r}, key_id={self.key_id})"


@dataclass(frozen=True)
class IssuerPublicKey:
    """The public half of an issuer key, as a verifying device trusts it."""

    issuer_id: str
    key_id: str
    key: VerifyingKey = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, key: VerifyingKey, issuer_id: str) -> IssuerPublicKey:
        return cls(_check_issuer_id(issuer_id), key_id_of(signing.public_bytes(key)), key)

    @classmethod
    def from_pem(cls, pem: bytes, issuer_id: str | None = None, *, source: str = "PEM") -> IssuerPublicKey:
        """Parse a public PEM; the issuer id is ``issuer_id``, else the PEM's own line, else ``key-<id>``."""
        key = signing.ED25519.parse_public(pem, source, CredentialKeyError)
        if issuer_id is None:
            line = _ISSUER_LINE.search(pem.split(b"-----BEGIN", 1)[0])
            if line is not None:
                issuer_id = line.group(1).decode("ascii", "replace")
        if issuer_id is None:
            issuer_id = "key-" + key_id_of(signing.public_bytes(key))
        return cls.from_key(key, issuer_id)

    @classmethod
    def load(cls, path: Path, issuer_id: str | None = None) -> IssuerPublicKey:
        data = key_files.read_public(path, "issuer public key", CredentialKeyError)
        return cls.from_pem(data, issuer_id, source=f"the issuer public key file {str(path)!r}")

    def to_pem(self) -> bytes:
        return f"SafePassage issuer: {self.issuer_id}\n".encode("ascii") + key_files.public_pem(self.key)


class TrustedIssuers:
    """The issuer keys a device accepts credentials from, by key id."""

    def __init__(self, keys: Iterable[IssuerPublicKey] = ()) -> None:
        self._by_id: dict[str, IssuerPublicKey] = {}
        for key in keys:
            known = self._by_id.get(key.key_id)
            if known is not None and known.issuer_id != key.issuer_id:
                raise CredentialKeyError(
                    f"issuer key {key.key_id} is listed for both {known.issuer_id!r} and {key.issuer_id!r}"
                )
            self._by_id[key.key_id] = key

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> TrustedIssuers:
        return cls(IssuerPublicKey.load(path) for path in paths)

    def get(self, key_id: str) -> IssuerPublicKey:
        """The trusted key with this id; UnknownIssuer when there is none."""
        try:
            return self._by_id[key_id]
        except KeyError:
            raise UnknownIssuer(
                f"the credential is signed by issuer key {key_id}, which is not trusted here"
            ) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def __iter__(self) -> Iterator[IssuerPublicKey]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"TrustedIssuers({sorted(self._by_id)})"


class ReaderKey:
    """An agency device's X25519 key, which opens the sealed part of credentials issued to it."""

    __slots__ = ("_private", "key_id", "public")

    def __init__(self, private: AgreementKey) -> None:
        self._private = key_agreement.X25519.private_key(private, "a reader key", CredentialKeyError)
        self.public = ReaderPublicKey.from_key(private.public_key())
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls) -> ReaderKey:
        return cls(key_agreement.X25519.generate())

    @classmethod
    def load(cls, path: Path) -> ReaderKey:
        return cls(key_agreement.X25519.load(path, "reader key", CredentialKeyError))

    @classmethod
    def load_or_create(cls, path: Path) -> ReaderKey:
        """Load the key at ``path``, creating it (0600, atomically) when there is none."""
        key, created = key_agreement.X25519.load_or_create(path, "reader key", CredentialKeyError)
        _created(created, "reader key", path)
        return cls(key)

    def public_pem(self) -> bytes:
        return self.public.to_pem()

    def exchange(self, peer_raw: bytes) -> bytes:
        """X25519 shared secret with a raw 32-byte public key (ValueError for a degenerate one)."""
        return key_agreement.exchange(self._private, peer_raw)

    def __repr__(self) -> str:
        return f"ReaderKey(key_id={self.key_id})"


@dataclass(frozen=True)
class ReaderPublicKey:
    """A reader's public key, as an issuer encrypts to it."""

    key_id: str
    key: AgreementPublicKey = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, key: AgreementPublicKey) -> ReaderPublicKey:
        return cls(key_id_of(key_agreement.public_bytes(key)), key)

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "PEM") -> ReaderPublicKey:
        return cls.from_key(key_agreement.X25519.parse_public(pem, source, CredentialKeyError))

    @classmethod
    def load(cls, path: Path) -> ReaderPublicKey:
        data = key_files.read_public(path, "reader public key", CredentialKeyError)
        return cls.from_pem(data, source=f"the reader public key file {str(path)!r}")

    @property
    def raw(self) -> bytes:
        return key_agreement.public_bytes(self.key)

    def to_pem(self) -> bytes:
        return key_files.public_pem(self.key)
