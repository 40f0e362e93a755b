"""Errors of the model build step.

ModelPackError (SafePassageError)
├── ModelFormatError   (DataIntegrityError)  a source file does not parse as its format
└── ModelSourceMissing (FailedPrecondition)  a source package or file is not installed
"""

from __future__ import annotations

from safepassage_core.errors import DataIntegrityError, FailedPrecondition, SafePassageError


class ModelPackError(SafePassageError):
    """Root of the model build step's errors."""


class ModelFormatError(ModelPackError, DataIntegrityError):
    pass


class ModelSourceMissing(ModelPackError, FailedPrecondition):
    pass
