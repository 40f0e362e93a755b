"""The log's Ed25519 signing key on disk, and the public key auditors pin.

The private key is PKCS#8 PEM, unencrypted, mode 0600: the server signs tree
heads unattended, so a passphrase would only move the secret into its config.
Auditors receive ``log_public_key.pem`` (SubjectPublicKeyInfo PEM) and should
compare :func:`key_id` with the value the operator publishes out of band: an
export signs itself with whatever key it ships.
"""

from __future__ import annotations

from pathlib import Path

from safepassage.core import key_files, signing
from safepassage.core.private_files import PrivateFileRefused
from safepassage.core.signing import SigningKey, VerifyingKey

__all__ = [
    "generate_signing_key",
    "key_id",
    "load_or_create_signing_key",
    "load_public_key",
    "load_signing_key",
    "public_key_bytes",
    "public_key_pem",
]

_WHAT = "transparency-log signing key"


def public_key_bytes(key: VerifyingKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return signing.public_bytes(key)


def key_id(key: VerifyingKey) -> str:
    """Hex SHA-256 of the raw public key: the log's name for humans to compare."""
    return signing.fingerprint(key)


def public_key_pem(key: VerifyingKey) -> bytes:
    return key_files.public_pem(key)


def load_public_key(pem: bytes) -> VerifyingKey:
    """Parse a PEM public key; ValueError unless it is Ed25519."""
    return signing.ED25519.parse_public(pem, "the log public key", ValueError)


def load_signing_key(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 private key; ValueError unless it is an Ed25519 one."""
    # Refused, naming the file, if group or others may read it (the one check for every key file).
    key = key_files.load_private_pem(Path(path), _WHAT, PrivateFileRefused)
    return signing.ED25519.private_key(key, str(path), ValueError)


def generate_signing_key(path: Path) -> SigningKey:
    """Create a new key at ``path`` (mode 0600, parents created); FileExistsError if one is there.

    Linked into place (:func:`safepassage.core.key_files.create_private_pem`), so two processes
    starting at once cannot each use their own key.
    """
    key = signing.ED25519.generate()
    if not key_files.create_private_pem(Path(path), key, _WHAT, PrivateFileRefused):
        raise FileExistsError(f"a key file is already at {path}")
    return key


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The key at ``path``, created on first use."""
    if Path(path).exists():  # read first: a restart on a full disk must not need to write a key
        return load_signing_key(path)
    try:
        return generate_signing_key(path)
    except FileExistsError:  # another process made it first: that key stands
        return load_signing_key(path)
