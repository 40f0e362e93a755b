"""What every SafePassage package shares: the root of the error hierarchy."""

from safepassage_core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SafePassageError,
    TooLarge,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "DataIntegrityError",
    "FailedPrecondition",
    "InvalidInput",
    "NotFound",
    "SafePassageError",
    "TooLarge",
    "Unavailable",
]
