"""Errors of the travel-document room: chip data that cannot be read, and passive authentication.

Every class inherits from the room's root *and* from exactly one category of
``safepassage.core.errors``; the server maps the category to a gRPC status.

    TravelDocumentError (SafePassageError)
    ├── MalformedDocument           (InvalidInput)        bytes that are not what their tag or format says
    │   └── MrzCheckDigitMismatch                         an ICAO 7-3-1 check digit does not match its field
    ├── UnsupportedDocumentFormat   (InvalidInput)        a version, encoding or algorithm not read here
    ├── DocumentTooLarge            (TooLarge)            a data group or field over its hard limit
    ├── TrustStoreError             (FailedPrecondition)  no CSCA configured, or the CSCA folder unreadable
    └── PassiveAuthenticationFailed (FailedPrecondition)  the SOD does not prove the data groups (a reason)

Chip data is attacker-controlled: every length is checked against what is left and against a
hard limit before anything is allocated. Messages name the data group, the field and the
offset; they never quote names, document numbers, dates or image bytes.
"""

from __future__ import annotations

import enum

from safepassage.core.errors import FailedPrecondition, InvalidInput, SafePassageError, TooLarge


class TravelDocumentError(SafePassageError):
    """Root of the errors about ePassport chip data."""


class MalformedDocument(TravelDocumentError, InvalidInput):
    """Truncated, wrongly tagged or inconsistent chip data; the message names where."""


class MrzCheckDigitMismatch(MalformedDocument):
    """An MRZ field's check digit (ICAO 9303 part 3, weights 7-3-1) does not match the field."""


class UnsupportedDocumentFormat(TravelDocumentError, InvalidInput):
    """Well formed, but a version, encoding or algorithm this reader does not support."""


class DocumentTooLarge(TravelDocumentError, TooLarge):
    """A data group, an element or a count beyond the reader's hard limit."""


class TrustStoreError(TravelDocumentError, FailedPrecondition):
    """The deployment's CSCA certificates are not configured or cannot be read."""


class AuthenticationFailure(enum.StrEnum):
    """Why passive authentication failed: one precise reason, in the order the checks run."""

    # The SOD's SignerInfo signature does not verify under the Document Signer's key.
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    # The signed messageDigest attribute is not the hash of the LDS security object.
    SIGNED_CONTENT_DIGEST_MISMATCH = "SIGNED_CONTENT_DIGEST_MISMATCH"
    # No trusted CSCA has the Document Signer certificate's issuer name (a foreign or unknown CSCA).
    CSCA_UNKNOWN = "CSCA_UNKNOWN"
    # A CSCA of that name is trusted, but its key did not sign the Document Signer certificate.
    DOCUMENT_SIGNER_NOT_ISSUED_BY_CSCA = "DOCUMENT_SIGNER_NOT_ISSUED_BY_CSCA"
    # The Document Signer certificate was not valid at the signing time (expired, or not yet valid).
    DOCUMENT_SIGNER_EXPIRED = "DOCUMENT_SIGNER_EXPIRED"
    DOCUMENT_SIGNER_NOT_YET_VALID = "DOCUMENT_SIGNER_NOT_YET_VALID"
    # The CSCA certificate was not valid at the signing time.
    CSCA_NOT_VALID = "CSCA_NOT_VALID"
    # The SOD claims a signing time in the future.
    SIGNING_TIME_IN_FUTURE = "SIGNING_TIME_IN_FUTURE"
    # A data group given is not listed in the SOD.
    DATA_GROUP_NOT_IN_SOD = "DATA_GROUP_NOT_IN_SOD"
    # A data group's hash differs from the one the SOD holds: the data group was changed (a swapped photo).
    DATA_GROUP_HASH_MISMATCH = "DATA_GROUP_HASH_MISMATCH"


class PassiveAuthenticationFailed(TravelDocumentError, FailedPrecondition):
    """The SOD does not prove the data groups given; ``reason`` says which check failed."""

    def __init__(self, reason: AuthenticationFailure, message: str) -> None:
        super().__init__(f"passive authentication failed ({reason.value}): {message}")
        self.reason = reason
        self.detail = message
