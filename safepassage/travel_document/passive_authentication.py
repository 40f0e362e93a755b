"""Passive authentication (ICAO 9303 part 11, 5.1): does the SOD prove these data groups?

The checks, in order, each failing with its own reason (errors.AuthenticationFailure):

1. the SOD's signature verifies under the Document Signer certificate it carries, and its signed
   messageDigest is the hash of the LDS security object (signed_data.check_signature);
2. a trusted CSCA (trust_store) has the Document Signer certificate's issuer name, and one of those
   CSCA keys signed it: otherwise the CSCA is unknown (a foreign state, or a forger's own CSCA), or
   the certificate was not issued by the CSCA it names;
3. at the signing time (the SOD's signingTime attribute, else the time of the check; a signing
   time in the future is refused) the Document Signer and the CSCA certificates were valid;
4. each data group given is in the SOD, and its hash is the SOD's: a swapped photo fails here.

The chain model (validity at the signing time) is what ICAO's long-lived documents need: a
Document Signer's certificate outlives its key's use by the documents' validity. Its limit: the
signing time is the signer's claim, so a stolen Document Signer key could backdate; CSCA
revocation lists (CRLs) are not checked here.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from safepassage.core import certificates
from safepassage.core.signing import SignatureInvalid
from safepassage.travel_document.errors import AuthenticationFailure, PassiveAuthenticationFailed
from safepassage.travel_document.signed_data import check_signature
from safepassage.travel_document.sod import Sod
from safepassage.travel_document.trust_store import CscaTrustStore

__all__ = ["CLOCK_SKEW", "PassiveAuthentication", "authenticate"]

# A signing time this far ahead of our clock is a clock difference, not a claim about the future.
CLOCK_SKEW = datetime.timedelta(days=1)


@dataclass(frozen=True)
class PassiveAuthentication:
    """What passed: which data groups, under which certificates, signed when. Nothing personal."""

    data_groups: tuple[int, ...]
    hash_algorithm: str
    signing_time: datetime.datetime
    signing_time_signed: bool  # False: no signingTime attribute; the check's own time was used
    document_signer_sha256: str
    csca_sha256: str
    country: str  # the Document Signer certificate's C (the issuing state), "" if absent


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _fail(reason: AuthenticationFailure, message: str) -> PassiveAuthenticationFailed:
    return PassiveAuthenticationFailed(reason, message)


def authenticate(
    sod: Sod, data_groups: Mapping[int, bytes], trust: CscaTrustStore, now: datetime.datetime
) -> PassiveAuthentication:
    """What was proved if the SOD vouches for ``data_groups``; PassiveAuthenticationFailed otherwise."""
    check_signature(sod.signed, "SOD")
    signer = sod.document_signer
    csca = _issuing_csca(signer, trust)
    signed_at = sod.signed.signing_time
    at = signed_at or now
    if at > now + CLOCK_SKEW:
        raise _fail(AuthenticationFailure.SIGNING_TIME_IN_FUTURE, "the SOD's signing time is in the future")
    if at < signer.not_valid_before_utc:
        raise _fail(
            AuthenticationFailure.DOCUMENT_SIGNER_NOT_YET_VALID,
            "the Document Signer certificate was not yet valid at the signing time",
        )
    if at > signer.not_valid_after_utc:
        raise _fail(
            AuthenticationFailure.DOCUMENT_SIGNER_EXPIRED,
            "the Document Signer certificate had expired at the signing time",
        )
    if not csca.not_valid_before_utc <= at <= csca.not_valid_after_utc:
        raise _fail(
            AuthenticationFailure.CSCA_NOT_VALID, "the CSCA certificate was not valid at the signing time"
        )
    for number, data in sorted(data_groups.items()):
        expected = sod.hashes.get(number)
        if expected is None:
            raise _fail(AuthenticationFailure.DATA_GROUP_NOT_IN_SOD, f"DG{number} is not listed in the SOD")
        if hashlib.new(sod.hash_algorithm, data).digest() != expected:
            raise _fail(
                AuthenticationFailure.DATA_GROUP_HASH_MISMATCH,
                f"DG{number}'s hash differs from the SOD's: DG{number} is not the one the issuer signed",
            )
    countries = signer.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
    return PassiveAuthentication(
        data_groups=tuple(sorted(data_groups)),
        hash_algorithm=sod.hash_algorithm,
        signing_time=at,
        signing_time_signed=signed_at is not None,
        document_signer_sha256=_fingerprint(signer),
        csca_sha256=_fingerprint(csca),
        country=str(countries[0].value) if countries else "",
    )


def _issuing_csca(signer: x509.Certificate, trust: CscaTrustStore) -> x509.Certificate:
    """The trusted CSCA whose key signed the Document Signer certificate."""
    named = trust.named(signer.issuer)
    if not named:
        raise _fail(
            AuthenticationFailure.CSCA_UNKNOWN,
            "no trusted CSCA has the Document Signer certificate's issuer name (a foreign or unknown CSCA)",
        )
    for csca in named:
        try:
            certificates.check_issued_by(signer, csca)
        except SignatureInvalid:
            continue
        return csca
    raise _fail(
        AuthenticationFailure.DOCUMENT_SIGNER_NOT_ISSUED_BY_CSCA,
        "a trusted CSCA has the issuer's name, but none of their keys signed the Document Signer certificate",
    )
