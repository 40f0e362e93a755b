"""Signatures: Ed25519 keys on disk and in PEM, signing, and a verification that raises.

As :mod:`safepassage.core.sealing` keeps the AEAD recipe over pyca/cryptography's hazmat layer,
this module keeps the signature recipe: callers say what they sign and with which key; the
algorithms, encodings, key-type checks and the one way a failed verification is reported are
here, once. Two kinds of key:

* :data:`SigningKey` / :data:`VerifyingKey`: Ed25519, the keys SafePassage's own signers hold (the
  transparency log and its witnesses, NGO credential issuers, enrolling stations). :data:`ED25519`
  makes, loads and creates them on first use: a private key is a PKCS#8 PEM file, 0600, read and
  published through :mod:`safepassage.core.key_files`; a public key travels as SubjectPublicKeyInfo
  PEM or its 32 raw bytes, and is named by its :func:`fingerprint` (hex SHA-256 of the raw bytes,
  cut short where a format carries fewer).
* :data:`CertificateSigningKey` / :data:`CertificateVerifyingKey`: the key of a client's mTLS
  certificate (:mod:`safepassage.core.certificates`), EC or Ed25519, for the statements a device or
  an admin signs with it (capture statements, CCTV authorisations).

:func:`sign` makes Ed25519 signatures (64 raw bytes) and ECDSA over SHA-256 (DER);
:func:`verify` checks either and raises :class:`SignatureInvalid`, never returns False: a
forgotten ``if`` fails closed. Callers that answer people translate it into their own error in
their own words. Functions that read a key take ``source`` or ``what`` (how messages name it)
and ``error`` (the caller's class), as :mod:`safepassage.core.key_files` does.
"""

from __future__ import annotations

import hashlib
from typing import TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safepassage.core import key_files
from safepassage.core.errors import DataIntegrityError

__all__ = [
    "ED25519",
    "SIGNATURE_SIZE",
    "CertificateSigningKey",
    "CertificateVerifyingKey",
    "EcSigningKey",
    "EcVerifyingKey",
    "SignatureInvalid",
    "SigningKey",
    "VerifyingKey",
    "as_certificate_signing_key",
    "fingerprint",
    "parse_certificate_signing_key",
    "public_bytes",
    "sign",
    "verify",
]

SigningKey = Ed25519PrivateKey
VerifyingKey = Ed25519PublicKey
EcSigningKey = ec.EllipticCurvePrivateKey
EcVerifyingKey = ec.EllipticCurvePublicKey
CertificateSigningKey = EcSigningKey | SigningKey
CertificateVerifyingKey = EcVerifyingKey | VerifyingKey

SIGNATURE_SIZE = 64  # an Ed25519 signature
_ECDSA = ec.ECDSA(hashes.SHA256())


def _is_private(key: object) -> TypeGuard[Ed25519PrivateKey]:
    return isinstance(key, Ed25519PrivateKey)


def _is_public(key: object) -> TypeGuard[Ed25519PublicKey]:
    return isinstance(key, Ed25519PublicKey)


# Ed25519 keys: generate, load, load_or_create (PKCS#8 PEM, 0600), parse_public, and the type checks.
ED25519 = key_files.KeyKind("Ed25519", Ed25519PrivateKey.generate, _is_private, _is_public)


class SignatureInvalid(DataIntegrityError):
    """A signature does not verify: forged, altered, made over other bytes or by another key."""


def public_bytes(key: VerifyingKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes_raw()


def fingerprint(key: VerifyingKey, size: int = 32) -> str:
    """Hex of the first ``size`` bytes of SHA-256 over the raw public key: its name, never the key."""
    return hashlib.sha256(public_bytes(key)).digest()[:size].hex()


def as_certificate_signing_key(key: object, source: str, error: type[Exception]) -> CertificateSigningKey:
    """``key`` if it is an EC or Ed25519 private key, the kinds a client certificate holds."""
    if not isinstance(key, EcSigningKey | SigningKey):
        raise error(f"{source} is neither an EC nor an Ed25519 private key")
    return key


def parse_certificate_signing_key(pem: bytes, source: str, error: type[Exception]) -> CertificateSigningKey:
    """The EC or Ed25519 private key in unencrypted PEM bytes (a device's or an admin's)."""
    return as_certificate_signing_key(key_files.parse_private_pem(pem, source, error), source, error)


def sign(key: CertificateSigningKey, message: bytes) -> bytes:
    """An Ed25519 signature (64 raw bytes), or ECDSA over SHA-256 (DER) for an EC key."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, _ECDSA)


def verify(key: CertificateVerifyingKey, signature: bytes, message: bytes) -> None:
    """Return if ``signature`` is ``key``'s over ``message``; SignatureInvalid otherwise."""
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, _ECDSA)
    except (InvalidSignature, ValueError, TypeError):  # a signature of the wrong length or type
        raise SignatureInvalid("the signature does not verify under this key") from None
