"""Errors of the faces package.

Every class inherits from ``FacesError`` *and* from exactly one category of
``safepassage.core.errors``; the server's interceptor maps the category to a
gRPC status, so nothing here knows about grpc.

    FacesError (SafePassageError)
    ├── ImageDecodeError    (InvalidInput)        not a JPEG/PNG, corrupt or truncated
    ├── ImageTooSmall       (InvalidInput)        a side is under the minimum
    ├── ImageTooLarge       (TooLarge)            bytes or pixel count over the limit
    ├── NoFaceFound         (FailedPrecondition)  a face was required, none was found
    ├── MultipleFacesFound  (FailedPrecondition)  exactly one face was required
    ├── ModelFileMissing    (FailedPrecondition)  weights file absent: broken install
    └── ModelIntegrityError (DataIntegrityError)  weights file does not match its manifest

Face-count errors are FailedPrecondition, not InvalidInput: the image is well
formed, it just does not show what the request needs (another photo may).
Messages name sizes, formats and counts; they never quote image bytes,
embeddings or anything else biometric.
"""

from __future__ import annotations

from safepassage.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    SafePassageError,
    TooLarge,
)


class FacesError(SafePassageError):
    """Root of the faces package's errors."""


class ImageDecodeError(FacesError, InvalidInput):
    """The bytes are empty, not a JPEG or PNG, corrupt or truncated."""


class ImageTooSmall(FacesError, InvalidInput):
    """The decoded image has a side shorter than ``ImageLimits.min_side``."""


class ImageTooLarge(FacesError, TooLarge):
    """The encoded size or the pixel count is over ``ImageLimits``."""


class NoFaceFound(FacesError, FailedPrecondition):
    """The request needs a face and the detector found none."""


class MultipleFacesFound(FacesError, FailedPrecondition):
    """The request needs exactly one face and the detector found several."""


class ModelFileMissing(FacesError, FailedPrecondition):
    """A model weights file is not where the deployment says it is."""


class ModelIntegrityError(FacesError, DataIntegrityError):
    """A model weights file's SHA-256 differs from the pinned manifest value."""
