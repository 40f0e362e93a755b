"""What every SafePassage package shares: the root of the error hierarchy, and metrics."""

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SafePassageError,
    TooLarge,
    Unavailable,
)
from safepassage.core.metric import Metric

__all__ = [
    "AlreadyExists",
    "DataIntegrityError",
    "FailedPrecondition",
    "InvalidInput",
    "Metric",
    "NotFound",
    "SafePassageError",
    "TooLarge",
    "Unavailable",
]
