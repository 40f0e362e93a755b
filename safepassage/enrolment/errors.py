"""Errors raised by protected identity records.

Every class inherits from :class:`EnrolmentError` and from exactly one
category in :mod:`safepassage.core.errors`, so the server's one interceptor
maps it to a gRPC status. Messages name record ids, scopes and key versions;
never names, document numbers, PINs, recovery codes, keys or ciphertexts.
Like pyca/cryptography, a failed check raises; nothing returns False.

    EnrolmentError(SafePassageError)
    ├── InvalidRecord           (InvalidInput)        a record field is malformed or missing
    ├── InvalidConsent          (InvalidInput)        consent text, language or scopes malformed
    ├── RecordNotFound          (NotFound)            no such record (or no record for that recovery code)
    ├── RecordExists            (AlreadyExists)       the record id is taken
    ├── RecordErased            (FailedPrecondition)  the record was erased; only its tombstone remains
    ├── WrongGallery            (FailedPrecondition)  the gallery is not a PROTECTED_IDENTITY gallery
    ├── KeyringError            (FailedPrecondition)  the key-encryption keyring cannot be read or written
    ├── KeyDestroyed            (FailedPrecondition)  a data key is wrapped by a destroyed KEK version
    ├── FaceLivenessRequired    (FailedPrecondition)  the deployment enrols only live-captured faces
    ├── ConsentRequired         (PermissionDenied)    the operation's scope is not granted, or withdrawn
    ├── HolderNotVerified       (PermissionDenied)    live face, PIN or recovery code did not prove the holder
    ├── PinLocked               (PermissionDenied)    too many wrong PINs; locked for a while
    ├── RecordAccessDenied      (PermissionDenied)    the record policy refuses this caller (another
    │                                                 organisation's record, or a role that never may)
    ├── CredentialRetired       (PermissionDenied)    the credential was replaced by a newer one or revoked
    ├── LiveFaceRefused         (PermissionDenied)    the live face is not a fresh capture (embedding,
    │                                                 replayed template, unsigned or stale capture)
    ├── VaultUnavailable        (Unavailable)         the record vault's file is busy, full or failing: retry
    ├── VaultCorrupted          (DataIntegrityError)  SQLite reports the record vault's file damaged
    ├── RecordIntegrityError    (DataIntegrityError)  a sealed record or wrapped key failed to open (tampered,
    │                                                 or moved to another record id)
    ├── WrongKey                (DataIntegrityError)  sealed under another data key or KEK than the one given
    └── ReceiptInvalid          (DataIntegrityError)  a receipt's signature or content failed verification
"""

from __future__ import annotations

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SafePassageError,
    Unavailable,
)

__all__ = [
    "ConsentRequired",
    "CredentialRetired",
    "EnrolmentError",
    "FaceLivenessRequired",
    "HolderNotVerified",
    "InvalidConsent",
    "InvalidRecord",
    "KeyDestroyed",
    "KeyringError",
    "LiveFaceRefused",
    "PinLocked",
    "ReceiptInvalid",
    "RecordAccessDenied",
    "RecordErased",
    "RecordExists",
    "RecordIntegrityError",
    "RecordNotFound",
    "VaultCorrupted",
    "VaultUnavailable",
    "WrongGallery",
    "WrongKey",
]


class EnrolmentError(SafePassageError):
    """Root of every error raised on purpose by :mod:`enrolment`."""


class InvalidRecord(EnrolmentError, InvalidInput):
    """A record field is malformed, missing or over its limit."""


class InvalidConsent(EnrolmentError, InvalidInput):
    """Consent text, language tag or scopes are malformed."""


class RecordNotFound(EnrolmentError, NotFound):
    """No record has this id, or no record answers to this recovery code."""


class RecordExists(EnrolmentError, AlreadyExists):
    """A record with this id already exists."""


class RecordErased(EnrolmentError, FailedPrecondition):
    """The record was erased: its data key is destroyed and only a tombstone remains."""


class WrongGallery(EnrolmentError, FailedPrecondition):
    """Protected records live only in PROTECTED_IDENTITY galleries."""


class KeyringError(EnrolmentError, FailedPrecondition):
    """The key-encryption keyring cannot be read, parsed or written."""


class KeyDestroyed(EnrolmentError, FailedPrecondition):
    """The data key is wrapped by a key-encryption key version that was destroyed (crypto-shredded)."""


class ConsentRequired(EnrolmentError, PermissionDenied):
    """The holder has not granted, or has withdrawn, the consent scope this operation needs."""


class HolderNotVerified(EnrolmentError, PermissionDenied):
    """The live face, the PIN or the recovery code did not prove the holder."""


class PinLocked(EnrolmentError, PermissionDenied):
    """Too many wrong PINs for this record; PIN checks are refused until the lock expires."""


class RecordIntegrityError(EnrolmentError, DataIntegrityError):
    """A sealed record or wrapped data key failed authentication: tampered, or bound to another record."""


class WrongKey(EnrolmentError, DataIntegrityError):
    """The ciphertext names another key than the one given (a different data key or KEK)."""


class ReceiptInvalid(EnrolmentError, DataIntegrityError):
    """A signed receipt failed verification: bad signature, unknown key, or malformed content."""


class RecordAccessDenied(EnrolmentError, PermissionDenied):
    """The record policy refuses this caller: another organisation's record, or a role that never may."""


class CredentialRetired(EnrolmentError, PermissionDenied):
    """The credential was replaced by a newer one, or revoked at erasure.

    `record_id` / `organisation`: the record a replaced credential still names ("" after erasure),
    so the refusal can be logged against it and the holder can find uses of an old QR code.
    """

    def __init__(self, message: str, record_id: str = "", organisation: str = "") -> None:
        super().__init__(message)
        self.record_id = record_id
        self.organisation = organisation


class LiveFaceRefused(EnrolmentError, PermissionDenied):
    """The live face is not a fresh capture by this device: an embedding, a replay, unsigned or stale."""


class FaceLivenessRequired(EnrolmentError, FailedPrecondition):
    """The deployment enrols only faces captured with a liveness check, and this one had none."""


class VaultUnavailable(EnrolmentError, Unavailable):
    """The record vault's file is busy, full or failing (SQLite's busy and I/O errors); retry later."""


class VaultCorrupted(EnrolmentError, DataIntegrityError):
    """SQLite reports the record vault's file damaged."""
