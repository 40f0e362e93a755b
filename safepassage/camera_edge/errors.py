"""Errors of the edge client.

The face pipeline's errors (PipelineInputError, the ModelPackError family) are
safepassage.face.errors: the server runs the same pipeline.

    EdgeError (SafePassageError)
    ├── SourceError                                      a frame source cannot be used
    │   ├── SourceSpecError      (InvalidInput)         the source description is malformed
    │   └── SourceUnavailable    (Unavailable)          it cannot be opened, or dropped and did not come back
    ├── OutboxError                                      the offline queue cannot be used
    │   ├── OutboxCorrupt        (DataIntegrityError)   the queue file or an entry failed a check
    │   ├── DeviceKeyError       (FailedPrecondition)   the device key is missing, unreadable or wrong
    │   └── OutboxFull           (TooLarge)             full of unreviewed hits: a new query is refused
    ├── LivenessFailed           (PermissionDenied)     a liveness challenge was not met
    ├── CaptureTimedOut          (FailedPrecondition)   a kiosk capture was not accepted in time
    ├── EdgeConfigError          (InvalidInput)         an edge configuration file is invalid
    ├── CredentialsError         (Unauthenticated)      the device certificate, key or CA cannot be used
    └── ServerUnreachable        (Unavailable)          the matching server cannot be reached now

Every message names the file or entry at fault.
"""

from __future__ import annotations

from safepassage.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SafePassageError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)


class EdgeError(SafePassageError):
    """Root of camera_edge's errors."""


class SourceError(EdgeError):
    """A frame source (file, stream, device, folder) cannot be used."""


class SourceSpecError(SourceError, InvalidInput):
    pass


class SourceUnavailable(SourceError, Unavailable):
    pass


class OutboxError(EdgeError):
    """The durable offline queue cannot be used."""


class OutboxCorrupt(OutboxError, DataIntegrityError):
    pass


class OutboxUnusable(OutboxError, FailedPrecondition):
    """The queue file cannot be opened or written (permissions, disk, journal mode)."""


class OutboxMisuse(OutboxError, InvalidInput):
    """A caller passed the queue something malformed (a bad id, an answer for another request)."""


class OutboxEntryMissing(OutboxError, NotFound):
    """No queued entry has this id (evicted, or removed while in flight)."""


class DeviceKeyError(OutboxError, FailedPrecondition):
    pass


class OutboxFull(OutboxError, TooLarge):
    """Every kept entry is a hit, which is never evicted, so the new query was not queued."""


class LivenessFailed(EdgeError, PermissionDenied):
    """A liveness challenge was not met; the message says which check failed."""


class CaptureTimedOut(EdgeError, FailedPrecondition):
    pass


class EdgeConfigError(EdgeError, InvalidInput):
    pass


class CredentialsError(EdgeError, Unauthenticated):
    pass


class ServerUnreachable(EdgeError, Unavailable):
    pass
