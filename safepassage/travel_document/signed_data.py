"""CMS SignedData (RFC 5652) as ICAO 9303 uses it: one signer, its certificate inside, signed attributes.

The SOD and the CSCA master list are both this: a content of an ICAO type, signed by one signer
whose certificate travels in ``certificates``. :func:`read_signed_data` parses it (asn1crypto does
the ASN.1; every access is inside one guard so malformed bytes become MalformedDocument) and
:func:`check_signature` proves the signer signed that content: the ``messageDigest`` attribute is
the content's hash and the signature over the DER of the signed attributes verifies under the
certificate's key, with RSA PKCS#1 v1.5, RSASSA-PSS or ECDSA (pyca/cryptography verifies). Who
the signer is (the chain to a CSCA) is the caller's question. :func:`sign` writes one, for tests.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from safepassage.core import certificates
from safepassage.travel_document.errors import (
    AuthenticationFailure,
    MalformedDocument,
    PassiveAuthenticationFailed,
    UnsupportedDocumentFormat,
)

__all__ = ["HASHES", "SignedContent", "check_signature", "read_signed_data", "sign"]

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# What asn1crypto may raise on bytes that are not what their schema says.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


@dataclass(frozen=True)
class SignedContent:
    """A parsed SignedData: the content, who signed it and how, and what was signed."""

    content_type: str  # dotted OID of the encapsulated content
    content: bytes
    signer: x509.Certificate
    digest_algorithm: str  # "sha256", ...
    signature_scheme: str  # "rsassa_pkcs1v15", "rsassa_pss" or "ecdsa"
    signature_hash: str
    pss_salt_length: int | None
    signed_attributes: bytes  # their DER as a SET: what the signature covers
    message_digest: bytes
    signing_time: datetime.datetime | None
    signature: bytes


def _hash_name(name: str, what: str) -> str:
    if name not in HASHES:
        raise UnsupportedDocumentFormat(f"{what}: hash algorithm {name} is not supported")
    return name


def read_signed_data(data: bytes, content_type: str, what: str) -> SignedContent:
    """The SignedData in a DER ContentInfo whose content is of ``content_type``, with one signer."""
    try:
        return _read(data, content_type, what)
    except _PARSE_ERRORS as error:
        raise MalformedDocument(f"{what}: not a valid CMS SignedData ({type(error).__name__})") from None


def _read(data: bytes, content_type: str, what: str) -> SignedContent:
    info = cms.ContentInfo.load(data, strict=True)
    if info["content_type"].dotted != "1.2.840.113549.1.7.2":
        raise MalformedDocument(f"{what}: the CMS content is not SignedData")
    signed = info["content"]
    encapsulated = signed["encap_content_info"]
    if encapsulated["content_type"].dotted != content_type:
        raise MalformedDocument(
            f"{what}: encapsulates {encapsulated['content_type'].dotted}, not {content_type}"
        )
    content = encapsulated["content"].native
    if not isinstance(content, bytes) or not content:
        raise MalformedDocument(f"{what}: the signed content is absent")
    signers = signed["signer_infos"]
    if len(signers) != 1:
        raise MalformedDocument(f"{what}: {len(signers)} signers where one is expected")
    signer_info = signers[0]
    signer = _signer_certificate(signed, signer_info, what)
    attributes = signer_info["signed_attrs"]
    if not isinstance(attributes, cms.CMSAttributes) or len(attributes) == 0:
        raise MalformedDocument(f"{what}: the signer has no signed attributes (ICAO 9303 requires them)")
    found: dict[str, object] = {}
    for attribute in attributes:
        kind = attribute["type"].native
        if kind in found:
            raise MalformedDocument(f"{what}: the signed attribute {kind} appears twice")
        values = attribute["values"]
        if len(values) != 1:
            raise MalformedDocument(f"{what}: the signed attribute {kind} has {len(values)} values")
        found[kind] = values[0]
    declared = found.get("content_type")
    if not isinstance(declared, cms.ContentType) or declared.dotted != content_type:
        raise MalformedDocument(f"{what}: the signed contentType attribute is missing or names another type")
    digest = found.get("message_digest")
    if not isinstance(digest, core.OctetString):
        raise MalformedDocument(f"{what}: the signed messageDigest attribute is missing")
    signing_time = found.get("signing_time")
    algorithm: algos.SignedDigestAlgorithm = signer_info["signature_algorithm"]
    scheme = algorithm.signature_algo
    if scheme not in ("rsassa_pkcs1v15", "rsassa_pss", "ecdsa"):
        raise UnsupportedDocumentFormat(
            f"{what}: signature algorithm {algorithm['algorithm'].native} is not supported"
        )
    digest_algorithm = _hash_name(signer_info["digest_algorithm"]["algorithm"].native, what)
    try:
        signature_hash = algorithm.hash_algo
    except ValueError:  # rsaEncryption: the hash is the signer's digest algorithm
        signature_hash = digest_algorithm
    salt = algorithm["parameters"]["salt_length"].native if scheme == "rsassa_pss" else None
    return SignedContent(
        content_type=content_type,
        content=bytes(content),
        signer=signer,
        digest_algorithm=digest_algorithm,
        signature_scheme=scheme,
        signature_hash=_hash_name(signature_hash, what),
        pss_salt_length=salt,
        # Signed as an explicit SET OF (tag 31), carried under [0] IMPLICIT (tag A0): same bytes otherwise.
        signed_attributes=b"\x31" + attributes.dump()[1:],
        message_digest=bytes(digest.native),
        signing_time=signing_time.native if isinstance(signing_time, cms.Time) else None,
        signature=bytes(signer_info["signature"].native),
    )


def _signer_certificate(signed: cms.SignedData, signer_info: cms.SignerInfo, what: str) -> x509.Certificate:
    """The certificate in ``certificates`` that the SignerInfo's sid names."""
    sid = signer_info["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        candidate: asn1_x509.Certificate = choice.chosen
        if sid.name == "issuer_and_serial_number":
            named = sid.chosen
            matches = (
                named["issuer"].dump() == candidate.issuer.dump()
                and named["serial_number"].native == candidate.serial_number
            )
        else:
            matches = candidate.key_identifier == sid.chosen.native
        if matches:
            return certificates.parse_der(candidate.dump(), f"{what}'s signer certificate", MalformedDocument)
    raise MalformedDocument(f"{what}: the signer's certificate is not in the SignedData")


def check_signature(signed: SignedContent, what: str) -> None:
    """Return if the signer signed this content; PassiveAuthenticationFailed saying which part failed."""
    # The signature first: with a forged signature the digest attribute proves nothing.
    try:
        key = signed.signer.public_key()
    except (ValueError, UnsupportedAlgorithm):  # e.g. EC keys with explicit domain parameters
        raise UnsupportedDocumentFormat(
            f"{what}: its signer certificate's key is of a kind not supported"
        ) from None
    chosen = HASHES[signed.signature_hash]()
    try:
        if signed.signature_scheme == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            key.verify(_der_ecdsa(signed.signature, key), signed.signed_attributes, ec.ECDSA(chosen))
        elif isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(chosen), signed.pss_salt_length or chosen.digest_size)
                if signed.signature_scheme == "rsassa_pss"
                else padding.PKCS1v15()
            )
            key.verify(signed.signature, signed.signed_attributes, pad, chosen)
        else:
            raise InvalidSignature
    except (InvalidSignature, ValueError):
        raise PassiveAuthenticationFailed(
            AuthenticationFailure.SIGNATURE_INVALID,
            f"the {what} signature does not verify under its signer certificate's key",
        ) from None
    actual = hashlib.new(signed.digest_algorithm, signed.content).digest()
    if actual != signed.message_digest:
        raise PassiveAuthenticationFailed(
            AuthenticationFailure.SIGNED_CONTENT_DIGEST_MISMATCH,
            f"the {what}'s signed messageDigest is not the hash of its content (the content was changed)",
        )


def _der_ecdsa(signature: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    """DER as CMS writes ECDSA; some issuers write plain r || s (BSI TR-03111), converted here."""
    size = (key.curve.key_size + 7) // 8
    if signature[:1] != b"\x30" and len(signature) == 2 * size:
        return encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
    return signature


def sign(
    content: bytes,
    content_type: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    *,
    digest: str = "sha256",
    pss: bool = False,
    signing_time: datetime.datetime | None = None,
) -> bytes:
    """A DER ContentInfo of SignedData over ``content`` by ``key`` (what the tests' issuer writes)."""
    chosen = HASHES[digest]()
    attributes = [
        {"type": "content_type", "values": [cms.ContentType(content_type)]},
        {"type": "message_digest", "values": [hashlib.new(digest, content).digest()]},
    ]
    if signing_time is not None:
        attributes.append({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]})
    signed_attributes = cms.CMSAttributes(attributes)
    to_sign = signed_attributes.dump()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(chosen))
        algorithm: dict[str, object] = {"algorithm": f"{digest}_ecdsa"}
    elif pss:
        signature = key.sign(to_sign, padding.PSS(padding.MGF1(chosen), chosen.digest_size), chosen)
        algorithm = {
            "algorithm": "rsassa_pss",
            "parameters": {
                "hash_algorithm": {"algorithm": digest},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
                "salt_length": chosen.digest_size,
            },
        }
    else:
        signature = key.sign(to_sign, padding.PKCS1v15(), chosen)
        algorithm = {"algorithm": f"{digest}_rsa"}
    asn1_certificate = asn1_x509.Certificate.load(certificates.to_der(certificate))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": asn1_certificate.issuer,
                        "serial_number": asn1_certificate.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": digest},
            "signed_attrs": signed_attributes,
            "signature_algorithm": algorithm,
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": digest}],
            "encap_content_info": {"content_type": cms.ContentType(content_type), "content": content},
            "certificates": [asn1_certificate],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())
