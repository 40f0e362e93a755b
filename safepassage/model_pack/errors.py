"""Errors of the model build step, in the model errors' family (safepassage.face.errors).

ModelPackError (safepassage.face.errors)
├── ModelFormatError   (DataIntegrityError)  a source file does not parse as its format
├── ModelSourceMissing (FailedPrecondition)  a source package or file is not installed
└── ModelArchiveError  (InvalidInput)        a model pack archive is malformed or holds what it should not

A file whose sha256 differs from its manifest entry is face's ModelHashMismatch, wherever it is found.
"""

from __future__ import annotations

from safepassage.core.errors import DataIntegrityError, FailedPrecondition, InvalidInput
from safepassage.face.errors import ModelPackError


class ModelFormatError(ModelPackError, DataIntegrityError):
    pass


class ModelSourceMissing(ModelPackError, FailedPrecondition):
    pass


class ModelArchiveError(ModelPackError, InvalidInput):
    pass
