"""Errors raised by the transparency log, its proofs and its auditor.

Every class inherits from :class:`AuditLogError` *and* from exactly one
category in :mod:`safepassage_core.errors`, so the server's interceptor maps
it to a gRPC status without knowing about this package. Messages name
indices, tree sizes and field names; never the rejected value of a field,
which might be the personal data the log exists to keep out.

    AuditLogError(SafePassageError)
    ├── InvalidEvent       (InvalidInput)        a LogEvent field is malformed or could carry personal data
    ├── InvalidRange       (InvalidInput)        an index, size or range outside the tree
    ├── LogKeyMismatch     (FailedPrecondition)  the log was opened with another signing key
    ├── LogSchemaMismatch  (FailedPrecondition)  the file was written by a newer version of this code
    ├── LogClosed          (FailedPrecondition)  used after close()
    ├── LogUnavailable     (Unavailable)         SQLite busy, locked or an I/O error; retry
    ├── ProofError         (DataIntegrityError)  an inclusion or consistency proof does not verify
    ├── SignatureError     (DataIntegrityError)  a signed tree head does not verify
    ├── LogCorrupted       (DataIntegrityError)  the log file disagrees with itself
    └── AuditFailure       (DataIntegrityError)  an exported log fails the offline audit

Verification raises rather than returning False (as pyca/cryptography does):
a forgotten ``if`` then fails closed.
"""

from __future__ import annotations

from safepassage_core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    SafePassageError,
    Unavailable,
)

__all__ = [
    "AuditFailure",
    "AuditLogError",
    "InvalidEvent",
    "InvalidRange",
    "LogClosed",
    "LogCorrupted",
    "LogKeyMismatch",
    "LogSchemaMismatch",
    "LogUnavailable",
    "ProofError",
    "SignatureError",
]


class AuditLogError(SafePassageError):
    """Root of every error raised on purpose by :mod:`audit_log`."""


class InvalidEvent(AuditLogError, InvalidInput):
    """A LogEvent field is malformed, or its shape could carry a name or a vector."""


class InvalidRange(AuditLogError, InvalidInput):
    """A leaf index, tree size or entry range lies outside the tree."""


class LogKeyMismatch(AuditLogError, FailedPrecondition):
    """The log file was created with another signing key; signing with this one would fork it."""


class LogClosed(AuditLogError, FailedPrecondition):
    """The log was used after :meth:`TransparencyLog.close`."""


class LogSchemaMismatch(AuditLogError, FailedPrecondition):
    """The log file was written by a newer schema than this code knows."""


class LogUnavailable(AuditLogError, Unavailable):
    """SQLite stayed busy past the timeout, or an I/O error occurred; the caller may retry."""


class ProofError(AuditLogError, DataIntegrityError):
    """A Merkle inclusion or consistency proof does not verify."""


class SignatureError(AuditLogError, DataIntegrityError):
    """A signed tree head's signature does not verify under the log's public key."""


class LogCorrupted(AuditLogError, DataIntegrityError):
    """The log file disagrees with itself: a leaf hash, an index gap or a stored tree head."""


class AuditFailure(AuditLogError, DataIntegrityError):
    """An exported log failed the audit.

    ``index`` is the first leaf index known to be bad and ``tree_head`` the
    0-based position in ``tree_heads.jsonl`` of the first bad tree head;
    either is None when the failure is not about one.
    """

    def __init__(self, message: str, *, index: int | None = None, tree_head: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.tree_head = tree_head
