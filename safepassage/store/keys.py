"""The store's master key: generation, loading, fingerprint and derived subkeys.

One 32-byte master key protects a store. It is never used directly: HKDF-SHA256
derives one subkey for AES-256-GCM sealing and one for the HMAC template digest,
so the two uses can never interact. The fingerprint identifies the key without
revealing it: the first 8 bytes of SHA-256(label || key).

A key file holds either the raw 32 bytes or their base64 text (surrounding
whitespace ignored). Nothing here ever formats key bytes into a message or log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepassage.core.private_files import check_owner_only
from safepassage.store.errors import InvalidKey

__all__ = [
    "FINGERPRINT_SIZE",
    "KEY_SIZE",
    "DerivedKeys",
    "check_key",
    "derive_keys",
    "generate_key",
    "key_fingerprint",
    "load_key",
]

_log = logging.getLogger(__name__)

KEY_SIZE = 32
FINGERPRINT_SIZE = 8

# Domain-separation labels: changing any of them changes every derived value,
# so they are part of the on-disk format.
_FINGERPRINT_LABEL = b"safepassage/store/key-fingerprint/v1\x00"
_SEAL_INFO = b"safepassage/store/template-seal/v1"
_DIGEST_INFO = b"safepassage/store/template-digest/v1"

# A base64 key file is 44 characters plus whitespace; anything much larger is
# not a key and is not read into memory.
_MAX_KEY_FILE = 1024


def check_key(key: bytes) -> bytes:
    """Return ``key`` as bytes if it is exactly 32 bytes, else raise InvalidKey."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidKey(f"sealing key must be bytes, not {type(key).__name__}")
    raw = bytes(key)
    if len(raw) != KEY_SIZE:
        raise InvalidKey(f"sealing key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def generate_key() -> bytes:
    """Return a fresh random 32-byte master key from the OS CSPRNG."""
    return os.urandom(KEY_SIZE)


def key_fingerprint(key: bytes) -> bytes:
    """First 8 bytes of SHA-256(label || key): names a key without revealing it."""
    return hashlib.sha256(_FINGERPRINT_LABEL + check_key(key)).digest()[:FINGERPRINT_SIZE]


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(key)


@dataclass(frozen=True)
class DerivedKeys:
    """Subkeys of one master key. ``repr`` shows the fingerprint only."""

    fingerprint: bytes
    seal_key: bytes = field(repr=False)
    digest_key: bytes = field(repr=False)


def derive_keys(key: bytes) -> DerivedKeys:
    """Derive the fingerprint and the sealing and digest subkeys of ``key``."""
    raw = check_key(key)
    return DerivedKeys(
        fingerprint=key_fingerprint(raw),
        seal_key=_hkdf(raw, _SEAL_INFO),
        digest_key=_hkdf(raw, _DIGEST_INFO),
    )


def load_key(path: Path) -> bytes:
    """Read a master key file: exactly 32 raw bytes, or base64 text of 32 bytes.

    Raises InvalidKey if the file cannot be read, group or others may access it,
    or it does not hold a key; the message names the path and the problem, never
    the content.
    """
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise InvalidKey(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    # Refused, naming the file and the chmod that fixes it: the one check for every key file.
    check_owner_only(path, mode, "key", InvalidKey)
    if len(data) == KEY_SIZE:
        return data
    if len(data) > _MAX_KEY_FILE:
        raise InvalidKey(f"key file {str(path)!r} is too large to be a key")
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        # `from None`: the decoder's message could quote part of the file.
        raise InvalidKey(
            f"key file {str(path)!r} holds neither {KEY_SIZE} raw bytes nor base64 text"
        ) from None
    if len(decoded) != KEY_SIZE:
        raise InvalidKey(f"key file {str(path)!r} decodes to {len(decoded)} bytes, expected {KEY_SIZE}")
    return decoded
