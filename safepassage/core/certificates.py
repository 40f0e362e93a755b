"""X.509 certificates as the deployment's PKI issues them: read from PEM or DER, checked against their
issuer, and the key each holds.

Everything that receives a certificate (the server checking a client or an admin's signature, an
edge device checking its own files, a capture statement's verifier) reads it here, with errors
that say which certificate was unreadable and never quote it. Only the PKI itself
(``safepassage.server.pki_issuance``, ``certificate_profiles``, ``certificate_index``) builds
certificates, with pyca/cryptography's x509 builder. The statements signed with a certificate's
key are checked by :func:`safepassage.core.signing.verify` with :func:`verifying_key`'s answer.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from safepassage.core.signing import CertificateVerifyingKey, SignatureInvalid

__all__ = [
    "Certificate",
    "check_issued_by",
    "holds_key",
    "parse_der",
    "parse_pem",
    "to_der",
    "to_pem",
    "verifying_key",
]

Certificate = x509.Certificate


def parse_pem(data: bytes, source: str, error: type[Exception]) -> Certificate:
    """The certificate in PEM bytes; ``error`` naming ``source`` if they hold none."""
    try:
        return x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError, x509.InvalidVersion):
        raise error(f"{source} is not a PEM certificate") from None


def parse_der(data: bytes, source: str, error: type[Exception]) -> Certificate:
    """The certificate in DER bytes; ``error`` naming ``source`` if they hold none."""
    try:
        return x509.load_der_x509_certificate(data)
    except (ValueError, TypeError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        raise error(f"{source} is not a DER certificate") from None


def to_pem(certificate: Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def to_der(certificate: Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def check_issued_by(certificate: Certificate, issuer: Certificate) -> None:
    """Return if ``issuer`` signed ``certificate``; SignatureInvalid (saying why) otherwise."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except InvalidSignature:
        raise SignatureInvalid("its signature does not verify under the issuer's key") from None
    except (ValueError, TypeError) as error:  # another issuer name, or a key type it cannot check
        raise SignatureInvalid(str(error)) from None


def verifying_key(certificate: Certificate, source: str, error: type[Exception]) -> CertificateVerifyingKey:
    """The EC or Ed25519 public key ``certificate`` holds; ``error`` for any other kind."""
    key = certificate.public_key()
    if not isinstance(key, CertificateVerifyingKey):
        raise error(f"{source} holds neither an EC nor an Ed25519 key")
    return key


def holds_key(certificate: Certificate, private_key: PrivateKeyTypes) -> bool:
    """Whether ``private_key`` is the private half of the key ``certificate`` holds."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(private_key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki))
