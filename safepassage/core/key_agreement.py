"""Key agreement: X25519 keys on disk and in PEM, raw public keys, and the shared secret.

The holder credential encrypts its sealed part to the reader keys of the agencies an NGO trusts:
an ephemeral X25519 key per credential, agreed with each reader's public key
(``safepassage.credential.credential``). The recipe mirrors :mod:`safepassage.core.signing`: a
private key is a PKCS#8 PEM file read and created through :mod:`safepassage.core.key_files`; a
public key travels as SubjectPublicKeyInfo PEM or its 32 raw bytes. What the shared secret
becomes (a key derived with context) is the caller's format.
"""

from __future__ import annotations

from typing import TypeGuard

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from safepassage.core import key_files

__all__ = ["X25519", "AgreementKey", "AgreementPublicKey", "exchange", "public_bytes"]

AgreementKey = X25519PrivateKey
AgreementPublicKey = X25519PublicKey


def _is_private(key: object) -> TypeGuard[X25519PrivateKey]:
    return isinstance(key, X25519PrivateKey)


def _is_public(key: object) -> TypeGuard[X25519PublicKey]:
    return isinstance(key, X25519PublicKey)


# X25519 keys: generate, load, load_or_create (PKCS#8 PEM, 0600), parse_public, and the type checks.
X25519 = key_files.KeyKind("X25519", X25519PrivateKey.generate, _is_private, _is_public)


def public_bytes(key: AgreementPublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key."""
    return key.public_bytes_raw()


def exchange(key: AgreementKey, peer: bytes) -> bytes:
    """The X25519 shared secret with the raw 32-byte public key ``peer``; ValueError for a degenerate one."""
    return key.exchange(X25519PublicKey.from_public_bytes(peer))
