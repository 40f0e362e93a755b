"""The ABIS specification's failure reasons, and the refusal that carries one to the answer.

A request MOSIP sent that cannot be served is answered (``returnValue`` "2" with a
``failureReason``), never dropped: :class:`AbisRefusal` carries the reason from wherever it is
found (the schema, the datashare, the CBEFF, the matcher) to the one place that writes answers.
"""

from __future__ import annotations

import enum

from safepassage.core.errors import FailedPrecondition, InvalidInput, SafePassageError


class FailureReason(enum.IntEnum):
    """Failure reason codes of the MOSIP ABIS API (spec 0.9, API version 1.1)."""

    INTERNAL_ERROR = 1
    ABORTED = 2
    UNEXPECTED_ERROR = 3
    INVALID_REQUEST = 4  # unable to serve the request: invalid request structure
    MISSING_REFERENCE_ID = 5
    MISSING_REQUEST_ID = 6
    DATASHARE_UNAVAILABLE = 7  # unable to fetch biometric details using referenceURL
    MISSING_REFERENCE_URL = 8
    MISSING_REQUEST_TIME = 9
    REFERENCE_ID_EXISTS = 10
    CBEFF_HAS_NO_DATA = 11
    REFERENCE_ID_NOT_FOUND = 12
    INVALID_VERSION = 13
    INVALID_ID = 14
    INVALID_REQUEST_TIME = 15
    INVALID_CBEFF = 16
    DATASHARE_EXPIRED = 17
    QUALITY_CHECK_FAILED = 18


class AbisError(SafePassageError):
    """Root of the adapter's errors."""


class AbisRefusal(AbisError, InvalidInput):
    """A request answered with returnValue 2 and this failure reason (the message never names people)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(f"{message} (failure reason {int(reason)})")
        self.reason = reason


class AbisConfigError(AbisError, InvalidInput):
    """The adapter's configuration file cannot be read or is invalid."""


class DatashareKeyError(AbisError, FailedPrecondition):
    """The partner key for datashare decryption is missing or unreadable."""
