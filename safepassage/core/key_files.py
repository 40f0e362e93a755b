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
  :func:`create_private_pem`; public halves are published 0644 by :func:`write_public_pem`.

Each caller passes ``what`` (how messages name the file: "device key") and ``error``, its own error
class, so each package keeps its hierarchy. Messages name the path and the problem, never content.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from safepassage.core import atomic_file
from safepassage.core.errors import SafePassageError
from safepassage.core.private_files import PUBLIC_FILE_MODE, read_private

__all__ = [
    "MAX_PEM_FILE",
    "create_key",
    "create_private_pem",
    "load_key",
    "load_private_pem",
    "parse_public_pem",
    "private_pem",
    "public_pem",
    "read_public",
    "write_public_pem",
]

MAX_PEM_FILE = 64 * 1024
_MAX_KEY_FILE = 1024  # 44 base64 characters and whitespace; larger is not a key


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


def load_private_pem(path: Path, what: str, error: type[SafePassageError]) -> PrivateKeyTypes:
    """The private key in the PEM file ``path``; the caller checks its type."""
    pem = read_private(path, what, limit=MAX_PEM_FILE, error=error)
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise error(f"the {what} file {str(path)!r} is not an unencrypted PEM private key") from None


def parse_public_pem(pem: bytes, source: str, error: type[SafePassageError]) -> PublicKeyTypes:
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
