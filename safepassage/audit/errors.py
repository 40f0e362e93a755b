"""Errors raised by the transparency log, its proofs and its auditor.

Every class inherits from :class:`AuditLogError` *and* from exactly one
category in :mod:`safepassage.core.errors`, so the server's interceptor maps
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
    ├── LogRolledBack      (DataIntegrityError)  the log is shorter than, or forks from, a head it published
    ├── AuditFailure       (DataIntegrityError)  an exported log fails the offline audit
    ├── WitnessRefused     (DataIntegrityError)  a witness refused a tree head: rollback, fork or forgery
    ├── UnknownLog         (FailedPrecondition)  the witness was not told this log's key
    ├── WitnessConflict    (FailedPrecondition)  the witness holds another size than the publisher thought
    └── WitnessUnavailable (Unavailable)         the witness cannot be reached; retry

Verification raises rather than returning False (as pyca/cryptography does):
a forgotten ``if`` then fails closed.
"""

from __future__ import annotations

from safepassage.core.errors import (
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
    "LogRolledBack",
    "LogSchemaMismatch",
    "LogUnavailable",
    "ProofError",
    "SignatureError",
    "UnknownLog",
    "WitnessConflict",
    "WitnessRefused",
    "WitnessUnavailable",
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


class LogRolledBack(AuditLogError, DataIntegrityError):
    """The log holds fewer entries than, or other entries than, a tree head it already published.

    Entries were removed (a truncated, or an older copy of the, file) or rewritten and re-signed;
    the server refuses to open such a log rather than sign over the gap.
    """


class WitnessRefused(AuditLogError, DataIntegrityError):
    """A witness refused a tree head: smaller than, or not extending, one it cosigned; or forged."""


class UnknownLog(AuditLogError, FailedPrecondition):
    """The witness does not know this log's public key (`safepassage audit witness add-log`)."""


class WitnessConflict(AuditLogError, FailedPrecondition):
    """The witness's newest cosigned size is not the one the consistency proof starts from.

    ``tree_size`` is the witness's size: the publisher proves from there and retries
    (C2SP tlog-witness answers 409 Conflict the same way).
    """

    def __init__(self, message: str, *, tree_size: int) -> None:
        super().__init__(message)
        self.tree_size = tree_size


class WitnessUnavailable(AuditLogError, Unavailable):
    """The witness could not be reached, or failed; the tree head is kept and published later."""
