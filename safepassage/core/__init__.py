"""What every SafePassage package shares: the root of the error hierarchy, and metrics.

Below the domain, each in its own module: sealing (the AES-GCM envelope), key derivation, key
files, keyrings, signatures, certificates, key agreement, atomic file replace and durable SQLite
(the recipes every room uses).
"""

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
