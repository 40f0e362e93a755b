"""Errors of the edge pipeline.

    EdgeError (SafePassageError)
    ├── ModelPackError                                   a model pack cannot be used
    │   ├── ManifestError        (InvalidInput)         the manifest is missing, unreadable or invalid
    │   ├── ModelFileMissing     (FailedPrecondition)   a file the manifest names is absent
    │   ├── ModelHashMismatch    (DataIntegrityError)   a file's sha256 differs from its manifest entry
    │   └── ModelShapeMismatch   (InvalidInput)         a model file disagrees with its manifest
    └── PipelineInputError       (InvalidInput)         a frame or face given to a stage is malformed

Every message names the file or entry at fault.
"""

from __future__ import annotations

from safepassage_core.errors import DataIntegrityError, FailedPrecondition, InvalidInput, SafePassageError


class EdgeError(SafePassageError):
    """Root of camera_edge's errors."""


class ModelPackError(EdgeError):
    """A model pack (manifest plus files) cannot be used."""


class ManifestError(ModelPackError, InvalidInput):
    pass


class ModelFileMissing(ModelPackError, FailedPrecondition):
    pass


class ModelHashMismatch(ModelPackError, DataIntegrityError):
    pass


class ModelShapeMismatch(ModelPackError, InvalidInput):
    pass


class PipelineInputError(EdgeError, InvalidInput):
    pass
