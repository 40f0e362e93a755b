"""Errors raised when issuing, reading or checking a holder credential.

Every class inherits from :class:`CredentialError` and from exactly one
category in :mod:`safepassage_core.errors`. Messages name credential ids,
issuer ids and key ids; never templates, record ids or personal data.
A failed check raises; nothing returns False.

    CredentialError(SafePassageError)
    ├── MalformedCredential     (InvalidInput)        not a credential: prefix, encoding or layout
    ├── CredentialKeyError      (InvalidInput)        a key file is unreadable or the wrong kind
    ├── UnknownIssuer           (PermissionDenied)    signed by a key this device does not trust
    ├── NotForThisReader        (PermissionDenied)    not sealed to this device's reader key
    ├── HolderMismatch          (PermissionDenied)    the live face does not match the credential's template
    ├── CredentialExpired       (FailedPrecondition)  past its expiry
    ├── CredentialNotYetValid   (FailedPrecondition)  issued in the future (beyond the clock skew)
    ├── ModelMismatch           (FailedPrecondition)  made by another face model than this device's
    └── CredentialTampered      (DataIntegrityError)  the signature or the sealed template failed to verify
"""

from __future__ import annotations

from safepassage_core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    PermissionDenied,
    SafePassageError,
)

__all__ = [
    "CredentialError",
    "CredentialExpired",
    "CredentialKeyError",
    "CredentialNotYetValid",
    "CredentialTampered",
    "HolderMismatch",
    "MalformedCredential",
    "ModelMismatch",
    "NotForThisReader",
    "UnknownIssuer",
]


class CredentialError(SafePassageError):
    """Root of every error raised on purpose by :mod:`holder_credential`."""


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
