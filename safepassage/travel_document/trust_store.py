"""The deployment's CSCA certificates: the issuing states whose passports passive authentication trusts.

One folder (``travel_documents.csca_dir``), read once at start-up:

* ``*.pem``, ``*.crt``, ``*.cer`` (PEM, one or more certificates each) and ``*.der`` files: CSCA
  certificates the operator put there, each a CA certificate (basicConstraints cA) or refused;
* ``*.ml`` files: ICAO CSCA master lists (a CMS SignedData of type id-icao-cscaMasterList
  holding ``CscaMasterList ::= SEQUENCE { version INTEGER, certList SET OF Certificate }``). A
  master list adds its certificates only if its signer's certificate was issued by a CSCA of the
  folder's own files and its signature verifies: a list is trusted because the operator's own
  CSCA vouches for its signer, never because it vouches for itself.

Anything else in the folder is ignored; an unreadable or wrong file refuses the start, naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from safepassage.core import certificates
from safepassage.core.signing import SignatureInvalid
from safepassage.travel_document.errors import TravelDocumentError, TrustStoreError
from safepassage.travel_document.signed_data import check_signature, read_signed_data, sign

__all__ = ["CSCA_MASTER_LIST", "CscaTrustStore", "write_master_list"]

log = logging.getLogger(__name__)

CSCA_MASTER_LIST = "2.23.136.1.1.2"  # id-icao-cscaMasterList
_CERTIFICATE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
_MASTER_LIST_SUFFIX = ".ml"
MAX_FILE_BYTES = 16 * 1024 * 1024  # ICAO's whole master list is a few megabytes
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


class _Certificates(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec: ClassVar[type] = asn1_x509.Certificate


class _CscaMasterList(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields: ClassVar[list[tuple[object, ...]]] = [("version", core.Integer), ("cert_list", _Certificates)]


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


@dataclass(frozen=True)
class CscaTrustStore:
    """The trusted CSCA certificates, looked up by the issuer name a Document Signer certificate carries."""

    certificates: tuple[x509.Certificate, ...]

    @classmethod
    def of(cls, trusted: Iterable[x509.Certificate]) -> CscaTrustStore:
        found = tuple(trusted)
        for certificate in found:
            if not _is_ca(certificate):
                raise TrustStoreError("a CSCA certificate must be a CA certificate (basicConstraints cA)")
        return cls(found)

    @classmethod
    def load(cls, folder: Path) -> CscaTrustStore:
        """Every CSCA certificate in ``folder``, then what its master lists add (see the module)."""
        if not folder.is_dir():
            raise TrustStoreError(f"the CSCA folder {folder} does not exist or is not a folder")
        own: list[x509.Certificate] = []
        lists: list[Path] = []
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            if suffix in _CERTIFICATE_SUFFIXES:
                for certificate in _read_certificates(path):
                    if not _is_ca(certificate):
                        raise TrustStoreError(f"{path} holds a certificate that is not a CA's; CSCAs only")
                    own.append(certificate)
            elif suffix == _MASTER_LIST_SUFFIX:
                lists.append(path)
        listed = [certificate for path in lists for certificate in _read_master_list(path, own)]
        store = cls(tuple(own) + tuple(c for c in listed if _is_ca(c)))
        if not store.certificates:
            raise TrustStoreError(
                f"the CSCA folder {folder} holds no CSCA certificates (.pem, .crt, .cer, .der, .ml)"
            )
        log.info(
            "CSCA trust store: %d certificates from %s (%d master lists)",
            len(store.certificates),
            folder,
            len(lists),
        )
        return store

    def named(self, name: x509.Name) -> list[x509.Certificate]:
        """The trusted CSCA certificates whose subject is ``name`` (several across a key rollover)."""
        return [c for c in self.certificates if c.subject == name]


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TrustStoreError(f"{path} is {size} bytes; a CSCA file is at most {MAX_FILE_BYTES}")
        return path.read_bytes()
    except OSError as error:
        raise TrustStoreError(f"cannot read {path}: {error.strerror}") from None


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path)
    if b"-----BEGIN" in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion):
            raise TrustStoreError(f"{path} is not a PEM certificate file") from None
    return [certificates.parse_der(data, str(path), TrustStoreError)]


def _read_master_list(path: Path, trusted: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of a master list whose signer a CSCA in ``trusted`` issued, signature checked."""
    try:
        signed = read_signed_data(_read(path), CSCA_MASTER_LIST, f"master list {path.name}")
        check_signature(signed, f"master list {path.name}")
    except TrustStoreError:
        raise
    except TravelDocumentError as error:  # malformed, or a signature that does not verify
        raise TrustStoreError(f"{path}: {error}") from None
    if not any(_issued(signed.signer, csca) for csca in trusted if csca.subject == signed.signer.issuer):
        raise TrustStoreError(
            f"{path}: its signer was not issued by a CSCA of this folder's own certificate files;"
            " add the CSCA that vouches for the list"
        )
    try:
        content = _CscaMasterList.load(signed.content, strict=True)
        return [certificates.parse_der(c.dump(), str(path), TrustStoreError) for c in content["cert_list"]]
    except _PARSE_ERRORS as error:
        raise TrustStoreError(
            f"{path}: the master list content is malformed ({type(error).__name__})"
        ) from None


def write_master_list(
    cscas: Iterable[x509.Certificate],
    signer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
) -> bytes:
    """A CSCA master list of ``cscas`` signed by a master list signer (what the tests' states publish)."""
    content = _CscaMasterList(
        {"version": 0, "cert_list": [asn1_x509.Certificate.load(certificates.to_der(c)) for c in cscas]}
    )
    return sign(content.dump(), CSCA_MASTER_LIST, signer_key, signer_certificate)


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificates.check_issued_by(certificate, issuer)
    except SignatureInvalid:
        return False
    return True
