"""EF.SOD (ICAO 9303 part 10, 4.6.2): the Document Security Object, read and written.

``77 L { ContentInfo }``: a CMS SignedData (safepassage.travel_document.signed_data) signed by the
issuing state's Document Signer, over the LDS security object::

    LDSSecurityObject ::= SEQUENCE {
      version             INTEGER { v0(0), v1(1) },
      hashAlgorithm       AlgorithmIdentifier,
      dataGroupHashValues SEQUENCE SIZE (2..16) OF DataGroupHash,
      ldsVersionInfo      LDSVersionInfo OPTIONAL }          -- present exactly when version is v1
    DataGroupHash ::= SEQUENCE { dataGroupNumber INTEGER (1..16), dataGroupHashValue OCTET STRING }

Reading checks the structure only; whether the SOD proves anything is passive authentication's
question (safepassage.travel_document.passive_authentication).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from asn1crypto import algos, core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from safepassage.travel_document import ber
from safepassage.travel_document.errors import MalformedDocument
from safepassage.travel_document.signed_data import HASHES, SignedContent, read_signed_data, sign

__all__ = ["LDS_SECURITY_OBJECT", "MAX_SOD_BYTES", "SOD_TAG", "Sod", "read_sod", "write_sod"]

SOD_TAG = 0x77
# id-icao-mrtd-security-ldsSecurityObject
LDS_SECURITY_OBJECT = "2.23.136.1.1.1"
# A SOD is a few kilobytes (the Document Signer certificate is most of it).
MAX_SOD_BYTES = 64 * 1024
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


class _DataGroupHash(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("data_group_number", core.Integer),
        ("data_group_hash_value", core.OctetString),
    ]


class _DataGroupHashes(core.SequenceOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec: ClassVar[type] = _DataGroupHash


class _LdsVersionInfo(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("lds_version", core.PrintableString),
        ("unicode_version", core.PrintableString),
    ]


class _LdsSecurityObject(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("version", core.Integer),
        ("hash_algorithm", algos.DigestAlgorithm),
        ("data_group_hash_values", _DataGroupHashes),
        ("lds_version_info", _LdsVersionInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class Sod:
    """The hash of each data group, the algorithm, and the signature that vouches for them."""

    hash_algorithm: str  # "sha256", ...
    hashes: Mapping[int, bytes]
    signed: SignedContent

    @property
    def document_signer(self) -> x509.Certificate:
        return self.signed.signer

    def __repr__(self) -> str:
        return f"Sod({self.hash_algorithm}, data groups {sorted(self.hashes)})"


def read_sod(data: bytes) -> Sod:
    """The SOD's LDS security object and signature, structurally checked (nothing verified yet)."""
    element = ber.decode_one(data, "SOD", SOD_TAG, max_bytes=MAX_SOD_BYTES)
    signed = read_signed_data(element.value, LDS_SECURITY_OBJECT, "SOD")
    try:
        lds = _LdsSecurityObject.load(signed.content, strict=True)
        version = lds["version"].native
        algorithm = lds["hash_algorithm"]["algorithm"].native
        entries = [
            (e["data_group_number"].native, e["data_group_hash_value"].native)
            for e in lds["data_group_hash_values"]
        ]
        has_version_info = lds["lds_version_info"].native is not None
    except _PARSE_ERRORS as error:
        raise MalformedDocument(
            f"SOD: the LDS security object is malformed ({type(error).__name__})"
        ) from None
    if version not in (0, 1) or (version == 1) != has_version_info:
        raise MalformedDocument("SOD: LDS security object version and version info disagree")
    if algorithm not in HASHES:
        raise MalformedDocument(f"SOD: data group hash algorithm {algorithm} is not supported")
    if not 2 <= len(entries) <= 16:
        raise MalformedDocument(f"SOD: {len(entries)} data group hashes (2 to 16 are allowed)")
    hashes: dict[int, bytes] = {}
    size = hashlib.new(algorithm).digest_size
    for number, value in entries:
        if not 1 <= number <= 16 or number in hashes:
            raise MalformedDocument(f"SOD: data group number {number} is out of range or repeated")
        if len(value) != size:
            raise MalformedDocument(
                f"SOD: the hash of DG{number} is {len(value)} bytes, not {size} ({algorithm})"
            )
        hashes[number] = value
    return Sod(algorithm, MappingProxyType(hashes), signed)


def write_sod(
    data_groups: Mapping[int, bytes],
    signer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    *,
    hash_algorithm: str = "sha256",
    pss: bool = False,
    signing_time: datetime.datetime | None = None,
    hashes: Mapping[int, bytes] | None = None,
) -> bytes:
    """A SOD over these data groups' hashes, signed by the Document Signer (``hashes`` overrides some)."""
    values = {number: hashlib.new(hash_algorithm, data).digest() for number, data in data_groups.items()}
    values.update(hashes or {})
    lds = _LdsSecurityObject(
        {
            "version": 0,
            "hash_algorithm": {"algorithm": hash_algorithm},
            "data_group_hash_values": [
                {"data_group_number": n, "data_group_hash_value": v} for n, v in sorted(values.items())
            ],
        }
    )
    content = sign(
        lds.dump(),
        LDS_SECURITY_OBJECT,
        signer_key,
        signer_certificate,
        digest=hash_algorithm,
        pss=pss,
        signing_time=signing_time,
    )
    return ber.encode(SOD_TAG, content)
