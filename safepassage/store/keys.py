"""The store's master key: generation, loading, fingerprint and derived subkeys.

One 32-byte master key protects a store. It is never used directly: HKDF-SHA256
derives one subkey for AES-256-GCM sealing and one for the HMAC template digest,
so the two uses can never interact. The fingerprint identifies the key without
revealing it: the first 8 bytes of SHA-256(label || key).

A key file holds either the raw 32 bytes or their base64 text (surrounding
whitespace ignored). Nothing here ever formats key bytes into a message or log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from safepassage.core import key_files
from safepassage.core.key_derivation import FINGERPRINT_SIZE, derive_key, fingerprint
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

KEY_SIZE = 32

# Domain-separation labels: changing any of them changes every derived value,
# so they are part of the on-disk format.
_FINGERPRINT_LABEL = b"safepassage/store/key-fingerprint/v1\x00"
_SEAL_INFO = b"safepassage/store/template-seal/v1"
_DIGEST_INFO = b"safepassage/store/template-digest/v1"


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
    return fingerprint(check_key(key), _FINGERPRINT_LABEL)


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
        seal_key=derive_key(raw, _SEAL_INFO),
        digest_key=derive_key(raw, _DIGEST_INFO),
    )


def load_key(path: Path) -> bytes:
    """Read a master key file: exactly 32 raw bytes, or base64 text of 32 bytes.

    Raises InvalidKey if the file cannot be read, group or others may access it,
    or it does not hold a key; the message names the path and the problem, never
    the content.
    """
    return key_files.load_key(path, "key", InvalidKey, size=KEY_SIZE)
