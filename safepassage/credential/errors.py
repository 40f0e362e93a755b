"""Errors raised about holder credentials, their revocation lists and devices' capture statements.

Every class inherits from :class:`CredentialError` (or, for capture
statements, :class:`CaptureError`) and from exactly one category in
:mod:`safepassage.core.errors`. Messages name credential ids, issuer ids and
key ids; never templates, record ids or personal data, and a capture error
never echoes the statement's values. A failed check raises; nothing returns False.

    CredentialError(SafePassageError)
    ├── MalformedCredential     (InvalidInput)        not a credential: prefix, encoding or layout
    ├── CredentialKeyError      (InvalidInput)        a key file is unreadable or the wrong kind
    ├── UnknownIssuer           (PermissionDenied)    signed by a key this device does not trust
    ├── NotForThisReader        (PermissionDenied)    not sealed to this device's reader key
    ├── HolderMismatch          (PermissionDenied)    the live face does not match the credential's template
    ├── CredentialExpired       (FailedPrecondition)  past its expiry
    ├── CredentialNotYetValid   (FailedPrecondition)  issued in the future (beyond the clock skew)
    ├── ModelMismatch           (FailedPrecondition)  made by another face model than this device's
    ├── CredentialTampered      (DataIntegrityError)  the signature or the sealed template failed to verify
    ├── CredentialRevoked       (PermissionDenied)    its issuer's revocation list names it
    ├── MalformedRevocationList (InvalidInput)        not a revocation list: size, prefix, encoding or fields
    ├── RevocationListTampered  (DataIntegrityError)  the issuer's signature over the list fails
    ├── RevocationListStale     (FailedPrecondition)  past its next update (+ grace), or from the future
    └── RevocationListNotForIssuer (FailedPrecondition) the list is another issuer's than the credential's

Capture statements (a device's signed word that it captured an image live)
have a root of their own: they are not credentials.

    CaptureError(SafePassageError)
    ├── MalformedCaptureStatement (InvalidInput)      not a statement: size, marker, encoding, fields
    ├── CaptureKeyError           (InvalidInput)      the device key or certificate cannot sign or verify
    ├── CaptureSignatureInvalid   (PermissionDenied)  not signed by the calling device's certificate key
    ├── CaptureDeviceMismatch     (PermissionDenied)  the statement names another device than the caller
    ├── CaptureImageMismatch      (PermissionDenied)  the image is not the one the statement was made for
    ├── CaptureReplayed           (PermissionDenied)  the statement was used before
    ├── LivenessNotAccepted       (PermissionDenied)  the liveness the device vouches for is not enough here
    ├── CaptureNotFresh           (FailedPrecondition) captured too long ago, or later than the server's clock
    └── CaptureReplayCacheFull    (Unavailable)       too many statements within the freshness window; retry
"""

from __future__ import annotations

from safepassage.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    PermissionDenied,
    SafePassageError,
    Unavailable,
)

__all__ = [
    "CaptureDeviceMismatch",
    "CaptureError",
    "CaptureImageMismatch",
    "CaptureKeyError",
    "CaptureNotFresh",
    "CaptureReplayCacheFull",
    "CaptureReplayed",
    "CaptureSignatureInvalid",
    "CredentialError",
    "CredentialExpired",
    "CredentialKeyError",
    "CredentialNotYetValid",
    "CredentialRevoked",
    "CredentialTampered",
    "HolderMismatch",
    "LivenessNotAccepted",
    "MalformedCaptureStatement",
    "MalformedCredential",
    "MalformedRevocationList",
    "ModelMismatch",
    "NotForThisReader",
    "RevocationListNotForIssuer",
    "RevocationListStale",
    "RevocationListTampered",
    "UnknownIssuer",
]


class CredentialError(SafePassageError):
    """Root of every error raised on purpose by :mod:`safepassage.credential`."""


class MalformedCredential(CredentialError, InvalidInput):
    """The text or QR code is not a SafePassage credential (prefix, encoding or layout)."""


class CredentialKeyError(CredentialError, InvalidInput):
    """An issuer or reader key cannot be read, or is not the kind of key expected."""


class UnknownIssuer(CredentialError, PermissionDenied):
    """The credential's issuer key is not among the keys this device trusts."""


class NotForThisReader(CredentialError, PermissionDenied):
    """The sealed template has no copy for this device's reader key."""


class HolderMismatch(CredentialError, PermissionDenied):
    """The live capture does not match the credential's template."""


class CredentialExpired(CredentialError, FailedPrecondition):
    """The credential is past its expiry date."""


class CredentialNotYetValid(CredentialError, FailedPrecondition):
    """The credential's issue time is in the future beyond the allowed clock skew."""


class ModelMismatch(CredentialError, FailedPrecondition):
    """The credential's template was made by a different face model than the verifying device uses."""


class CredentialTampered(CredentialError, DataIntegrityError):
    """The issuer's signature or the sealed template's authentication failed."""


class CredentialRevoked(CredentialError, PermissionDenied):
    """The issuer has retired the credential (re-issued or erased); its revocation list names it."""


class MalformedRevocationList(CredentialError, InvalidInput):
    """The bytes are not a SafePassage revocation list (size, prefix, encoding or fields)."""


class RevocationListTampered(CredentialError, DataIntegrityError):
    """The issuer's signature over the revocation list fails."""


class RevocationListStale(CredentialError, FailedPrecondition):
    """The revocation list is past its next update (plus grace), or issued after this device's clock."""


class RevocationListNotForIssuer(CredentialError, FailedPrecondition):
    """The revocation list is another issuer's, so it cannot say whether this credential is revoked."""


class CaptureError(SafePassageError):
    """Root of every error raised on purpose about a device's capture statement."""


class MalformedCaptureStatement(CaptureError, InvalidInput):
    """The bytes are not a capture statement (size, version marker, encoding or fields)."""


class CaptureKeyError(CaptureError, InvalidInput):
    """The device's private key or certificate cannot be used to sign or verify a capture statement."""


class CaptureSignatureInvalid(CaptureError, PermissionDenied):
    """The statement is not signed by the key of the certificate the call was authenticated with."""


class CaptureDeviceMismatch(CaptureError, PermissionDenied):
    """The statement (or the certificate) names another device than the calling one."""


class CaptureImageMismatch(CaptureError, PermissionDenied):
    """The image sent is not the image the statement was signed for."""


class CaptureReplayed(CaptureError, PermissionDenied):
    """The statement's nonce was used before: a statement vouches for one request only."""


class LivenessNotAccepted(CaptureError, PermissionDenied):
    """The liveness check the device vouches for is not one this operation accepts."""


class CaptureNotFresh(CaptureError, FailedPrecondition):
    """The capture is older than the freshness window, or later than the server's clock allows."""


class CaptureReplayCacheFull(CaptureError, Unavailable):
    """More statements arrived within the freshness window than the nonce cache holds; retry shortly."""
