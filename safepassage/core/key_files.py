"""Key files: how every secret key is created, loaded and published, once for the whole package.

Two kinds of file, each read through :func:`~safepassage.core.private_files.read_private` (a regular
file only its owner may access, refused otherwise with the ``chmod`` that fixes it) and created
through :func:`~safepassage.core.atomic_file.create` (0600 in a 0700 folder, written in full,
fsynced and linked into place: never half a key, never a key another process made first
overwritten):

* a symmetric key: :func:`load_key` reads exactly ``size`` raw bytes or, where the format allows,
  their base64 text (whitespace around it ignored); :func:`create_key` makes a random one.
* an asymmetric private key, PKCS#8 PEM unencrypted (services sign unattended: a passphrase would
  only move the secret into their configuration): :func:`load_private_pem`,
  :func:`create_private_pem`; a :class:`KeyKind` loads, checks and creates on first use keys of one
  type (:mod:`safepassage.core.signing` holds Ed25519's, :mod:`safepassage.core.key_agreement`
  X25519's); public halves are published 0644 by :func:`write_public_pem`.

Each caller passes ``what`` (how messages name the file: "device key") and ``error``, its own error
class, so each package keeps its hierarchy (parsing bytes already in memory takes any exception
class: some rooms report a malformed key as ValueError). Messages name the path and the problem,
never content.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeGuard, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from safepassage.core import atomic_file
from safepassage.core.errors import SafePassageError
from safepassage.core.private_files import PUBLIC_FILE_MODE, read_private

__all__ = [
    "MAX_PEM_FILE",
    "KeyKind",
    "create_key",
    "create_private_pem",
    "load_key",
    "load_private_pem",
    "parse_private_pem",
    "parse_public_pem",
    "private_pem",
    "public_pem",
    "read_public",
    "write_public_pem",
]

MAX_PEM_FILE = 64 * 1024
_MAX_KEY_FILE = 1024  # 44 base64 characters and whitespace; larger is not a key
_Private = TypeVar("_Private", bound=PrivateKeyTypes)
_Public = TypeVar("_Public", bound=PublicKeyTypes)


def load_key(
    path: Path, what: str, error: type[SafePassageError], *, size: int = 32, text: bool = True
) -> bytes:
    """The key in ``path``: ``size`` raw bytes or (``text``) their base64 text; ``error`` otherwise."""
    data = read_private(path, what, limit=_MAX_KEY_FILE, error=error)
    if len(data) == size:
        return data
    if not text:
        raise error(f"the {what} file {str(path)!r} holds {len(data)} bytes, expected {size}")
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""  # the decoder's message could quote part of the file
    if len(decoded) != size:
        raise error(f"the {what} file {str(path)!r} holds neither {size} raw bytes nor their base64 text")
    return decoded


def create_key(
    path: Path, what: str, error: type[SafePassageError], *, size: int = 32, text: bool = False
) -> bool:
    """A new random key at ``path`` (raw, or base64 text and a newline); False if one was there."""
    key = os.urandom(size)
    return _create(path, base64.b64encode(key) + b"\n" if text else key, what, error)


def _create(path: Path, data: bytes, what: str, error: type[SafePassageError]) -> bool:
    try:
        return atomic_file.create(path, data)
    except OSError as exc:
        raise error(f"cannot create the {what} file {str(path)!r}: {exc.strerror}") from None


def private_pem(key: PrivateKeyTypes) -> bytes:
    """PKCS#8 PEM, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_private_pem(pem: bytes, source: str, error: type[Exception]) -> PrivateKeyTypes:
    """The private key in PKCS#8 (or traditional) PEM bytes; ``source`` names where they came from."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise error(f"{source} is not an unencrypted PEM private key") from None


def load_private_pem(
    path: Path,
    what: str,
    error: type[SafePassageError],
    *,
    malformed: type[SafePassageError] | None = None,
) -> PrivateKeyTypes:
    """The private key in the PEM file ``path``; the caller checks its type.

    ``malformed``, if given, is raised instead of ``error`` for a file read whole that holds no key
    (a PKI tells a damaged CA key from a missing or exposed one).
    """
    pem = read_private(path, what, limit=MAX_PEM_FILE, error=error)
    return parse_private_pem(pem, f"the {what} file {str(path)!r}", malformed or error)


@dataclass(frozen=True)
class KeyKind(Generic[_Private, _Public]):
    """One type of asymmetric key kept in PEM: its name in messages, how one is made and recognised.

    :data:`safepassage.core.signing.ED25519` and :data:`safepassage.core.key_agreement.X25519` are
    the two; every check that a key read is of the type expected is made here.
    """

    name: str  # "Ed25519"
    generate: Callable[[], _Private]
    # isinstance checks, as functions: mypy takes no abstract class (pyca's key classes) for a type[...]
    is_private: Callable[[object], TypeGuard[_Private]]
    is_public: Callable[[object], TypeGuard[_Public]]

    def private_key(self, key: object, source: str, error: type[Exception]) -> _Private:
        """``key`` if it is a private key of this kind; ``error`` naming ``source`` otherwise."""
        if not self.is_private(key):
            raise error(f"{source} does not hold an {self.name} private key")
        return key

    def public_key(self, key: object, source: str, error: type[Exception]) -> _Public:
        """``key`` if it is a public key of this kind; ``error`` naming ``source`` otherwise."""
        if not self.is_public(key):
            raise error(f"{source} does not hold an {self.name} public key")
        return key

    def load(self, path: Path, what: str, error: type[SafePassageError]) -> _Private:
        """The key of this kind in the private PEM file ``path``."""
        return self.private_key(load_private_pem(path, what, error), f"the {what} file {str(path)!r}", error)

    def load_or_create(self, path: Path, what: str, error: type[SafePassageError]) -> tuple[_Private, bool]:
        """The key at ``path``, made and published (0600) on first use; and whether this call made it.

        The file is read first, so a restart on a full disk needs no write; a key another process
        publishes first wins.
        """
        if not os.path.lexists(path):
            key = self.generate()
            if create_private_pem(path, key, what, error):
                return key, True
        return self.load(path, what, error), False

    def parse_public(self, pem: bytes, source: str, error: type[Exception]) -> _Public:
        """The public key of this kind in SubjectPublicKeyInfo PEM bytes."""
        return self.public_key(parse_public_pem(pem, source, error), source, error)


def parse_public_pem(pem: bytes, source: str, error: type[Exception]) -> PublicKeyTypes:
    """The public key in a SubjectPublicKeyInfo PEM; ``source`` names where it came from."""
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise error(f"{source} holds no readable PEM public key") from None


def create_private_pem(path: Path, key: PrivateKeyTypes, what: str, error: type[SafePassageError]) -> bool:
    """Publish ``key`` at ``path`` (0600) unless a key file is there; False if one was."""
    return _create(path, private_pem(key), what, error)


def read_public(path: Path, what: str, error: type[SafePassageError]) -> bytes:
    """A public key file: regular, at most 64 KiB; anyone may read it, so its mode is not checked."""
    return read_private(path, what, limit=MAX_PEM_FILE, error=error, owner_only=False)


def write_public_pem(path: Path, pem: bytes, what: str, error: type[SafePassageError]) -> None:
    """Replace ``path`` (0644) with a public PEM: public keys are meant to be shared."""
    try:
        atomic_file.replace(path, pem, mode=PUBLIC_FILE_MODE)
    except OSError as exc:
        raise error(f"cannot write the {what} file {str(path)!r}: {exc.strerror}") from None
