"""Errors raised by the template store.

Every class inherits from :class:`StoreError` *and* from exactly one category
in :mod:`safepassage.core.errors`, so the server's interceptor maps it to a
gRPC status without knowing about this package. Every class takes just a
message, like any exception, so callers (the matcher) can raise them too.
Messages name gallery ids, template ids and at most one reference id; never
vectors, keys or blobs.

    StoreError(SafePassageError)
    ├── GalleryNotFound         (NotFound)            no such gallery
    ├── ReferenceNotFound       (NotFound)            no such reference in the gallery
    ├── GalleryExists           (AlreadyExists)       gallery id taken
    ├── DuplicateReference      (AlreadyExists)       reference id taken, or repeated in a batch
    ├── InvalidKey              (InvalidInput)        sealing key of the wrong size or unreadable
    ├── InvalidTemplate         (InvalidInput)        vector or reference id malformed
    ├── InvalidRecord           (InvalidInput)        gallery record field malformed
    ├── TooManyCaptures         (FailedPrecondition)  a subject already holds the most captures allowed
    ├── StoreClosed             (FailedPrecondition)  used after close()
    ├── SchemaMismatch          (FailedPrecondition)  schema newer than this code, or another key's store
    ├── StoreUnavailable        (Unavailable)         database busy, locked, I/O failed, or the data
    │                                                 folder refuses writes (full, read-only); retry
    ├── TemplateIntegrityError  (DataIntegrityError)  a sealed template failed to open
    └── StoreCorrupted          (DataIntegrityError)  SQLite reports a damaged file, or a digest mismatch
"""

from __future__ import annotations

import errno

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SafePassageError,
    Unavailable,
)


class StoreError(SafePassageError):
    """Root of every error raised on purpose by :mod:`store`."""


class GalleryNotFound(StoreError, NotFound):
    """The named gallery does not exist."""


class GalleryExists(StoreError, AlreadyExists):
    """A gallery with this id already exists."""


class ReferenceNotFound(StoreError, NotFound):
    """The gallery holds no template under this reference id."""


class DuplicateReference(StoreError, AlreadyExists):
    """The reference id is already enrolled in the gallery, or a batch repeats it."""


class InvalidKey(StoreError, InvalidInput):
    """A sealing key is not 32 bytes, or its file cannot be read or decoded."""


class InvalidTemplate(StoreError, InvalidInput):
    """A template vector or reference id is malformed (shape, dtype, non-finite, length)."""


class InvalidRecord(StoreError, InvalidInput):
    """A gallery record field is malformed (empty id, bad dimension, non-finite threshold)."""


class TooManyCaptures(StoreError, FailedPrecondition):
    """A subject already holds as many captures as a gallery allows: erase it and enrol it again."""


class StoreClosed(StoreError, FailedPrecondition):
    """The store was used after :meth:`TemplateStore.close`."""


class SchemaMismatch(StoreError, FailedPrecondition):
    """The file was written by a newer schema, or belongs to a different sealing key."""


class StoreUnavailable(StoreError, Unavailable):
    """SQLite stayed busy past the timeout, or an I/O error occurred; the caller may retry."""


# How a data folder refuses a file write: full, over a quota or file-size limit, no permission,
# mounted read-only, or failing. Each is the disk's state, not a bug: answered UNAVAILABLE.
WRITE_REFUSALS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}
)


def write_refused(error: BaseException) -> bool:
    """Whether ``error`` is the data folder refusing a write (see WRITE_REFUSALS)."""
    return isinstance(error, OSError) and error.errno in WRITE_REFUSALS


class TemplateIntegrityError(StoreError, DataIntegrityError):
    """A sealed template failed to open: wrong key, unknown version, tampering or truncation."""


class StoreCorrupted(StoreError, DataIntegrityError):
    """SQLite reports a damaged file, or stored templates disagree with the gallery digest."""
