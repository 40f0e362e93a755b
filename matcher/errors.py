"""Errors of the matcher.

    MatcherError (SafePassageError)
    ├── InvalidGalleryId      (InvalidInput)   malformed gallery id
    ├── InvalidReferenceId    (InvalidInput)   malformed reference id
    ├── InvalidVector         (InvalidInput)   wrong dimension, NaN or infinite values
    ├── InvalidSearch         (InvalidInput)   bad top_k, threshold, empty probe set
    ├── TooManyReferences     (TooLarge)       a 1:few restriction or batch over its limit
    └── SnapshotRejected      (DataIntegrityError)
                              an index snapshot failed verification; the caller
                              rebuilds from the store instead of trusting it

Galleries and references that do not exist are reported by the store's own
errors (``store.GalleryNotFound``, ``store.ReferenceNotFound``), which the
matcher lets through unchanged.
"""

from __future__ import annotations

from safepassage_core.errors import DataIntegrityError, InvalidInput, SafePassageError, TooLarge


class MatcherError(SafePassageError):
    """Root of the matcher's errors."""


class InvalidGalleryId(MatcherError, InvalidInput):
    pass


class InvalidReferenceId(MatcherError, InvalidInput):
    pass


class InvalidVector(MatcherError, InvalidInput):
    pass


class InvalidSearch(MatcherError, InvalidInput):
    pass


class TooManyReferences(MatcherError, TooLarge):
    pass


class SnapshotRejected(MatcherError, DataIntegrityError):
    pass
