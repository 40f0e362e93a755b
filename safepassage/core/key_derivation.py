"""What is derived from a secret: subkeys (HKDF-SHA256), fingerprints that name a key, and
slow hashes of short secrets (scrypt).

A key is never used for two purposes: each use takes its own subkey under its own ``info`` label,
so the uses cannot interact, and a fingerprint (SHA-256 over a label and the key, truncated) names
the key in files and logs without revealing it. Labels are part of the on-disk formats of the
callers that choose them: changing one changes every value derived with it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = ["FINGERPRINT_SIZE", "derive_key", "fingerprint", "stretch"]

FINGERPRINT_SIZE = 8


def derive_key(key: bytes, info: bytes, *, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 of ``key`` for the purpose ``info`` (``salt`` where the caller's format has one)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def fingerprint(key: bytes, label: bytes, size: int = FINGERPRINT_SIZE) -> bytes:
    """The first ``size`` bytes of SHA-256(label || key): names a key without revealing it."""
    return hashlib.sha256(label + key).digest()[:size]


def stretch(secret: bytes, salt: bytes, *, n: int, r: int, p: int = 1, length: int = 32) -> bytes:
    """scrypt of a short secret (a PIN): costly to guess offline, ``n`` x ``r`` setting the cost."""
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(secret)
