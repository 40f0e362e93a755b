"""Errors of the matcher.

    MatcherError (SafePassageError)
    ├── InvalidGalleryId      (InvalidInput)   malformed gallery id
    ├── InvalidReferenceId    (InvalidInput)   malformed reference id
    ├── InvalidVector         (InvalidInput)   wrong dimension, NaN or infinite values
    ├── InvalidSearch         (InvalidInput)   bad top_k, threshold, empty probe set
    ├── TooManyReferences     (TooLarge)       a 1:few restriction or batch over its limit
    ├── SnapshotRejected      (DataIntegrityError)
    │                         an index snapshot failed verification; the caller
    │                         rebuilds from the store instead of trusting it
    ├── IndexOverBudget       (FailedPrecondition) the index cannot fit the memory budget
    ├── CalibrationUnavailable (FailedPrecondition) no calibration, or too few impostor
    │                         searches for the FPIR asked
    ├── ProtectionKeyError    (FailedPrecondition) template-protection key missing or wrong
    └── BackendUnavailable    (Unavailable)  an external index backend cannot be reached

Galleries and references that do not exist are reported by the store's own
errors (``safepassage.store.GalleryNotFound``, ``safepassage.store.ReferenceNotFound``), which the
matcher lets through unchanged.
"""

from __future__ import annotations

from safepassage.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    SafePassageError,
    TooLarge,
    Unavailable,
)


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


class IndexOverBudget(MatcherError, FailedPrecondition):
    """A gallery's index cannot fit the memory budget; the message suggests the milvus backend."""


class CalibrationUnavailable(MatcherError, FailedPrecondition):
    """No calibration, or too few impostor searches to support the FPIR asked for."""


class ProtectionKeyError(MatcherError, FailedPrecondition):
    """The template-protection key is missing, destroyed, or not the gallery's."""


class BackendUnavailable(MatcherError, Unavailable):
    """An external index backend (Milvus) cannot be reached."""
