"""Errors of the face room: images, faces, the pipeline's stages and the model files they load.

Every class inherits from one of the two roots below *and* from exactly one
category of ``safepassage.core.errors``; the server's interceptor maps the
category to a gRPC status, so nothing here knows about grpc.

    FacesError (SafePassageError)                  an image or the faces in it cannot be used
    ├── ImageDecodeError    (InvalidInput)        not a JPEG/PNG, corrupt or truncated
    ├── ImageTooSmall       (InvalidInput)        a side is under the minimum
    ├── ImageTooLarge       (TooLarge)            bytes or pixel count over the limit
    ├── NoFaceFound         (FailedPrecondition)  a face was required, none was found
    ├── MultipleFacesFound  (FailedPrecondition)  exactly one face was required
    └── PipelineInputError  (InvalidInput)        a frame, face or setting given to a stage is malformed

    ModelPackError (SafePassageError)              a model file or a model pack cannot be used
    ├── ManifestError       (InvalidInput)        the manifest is missing, unreadable or invalid
    ├── ModelFileMissing    (FailedPrecondition)  a weights file is absent: broken install
    ├── ModelHashMismatch   (DataIntegrityError)  a file's sha256 differs from its manifest
    └── ModelShapeMismatch  (InvalidInput)        a model file disagrees with its manifest

The model build step (safepassage.model_pack.errors) adds its own errors under ModelPackError.
Model errors are not FacesErrors: a caller that skips an unreadable image must not skip a
broken install with it.

Face-count errors are FailedPrecondition, not InvalidInput: the image is well
formed, it just does not show what the request needs (another photo may).
Messages name sizes, formats, counts and files; they never quote image bytes,
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
    """Root of the errors about images and the faces in them."""


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


class PipelineInputError(FacesError, InvalidInput):
    """A frame, face, chip or setting given to a pipeline stage (or an edge stage after it) is malformed."""


class ModelPackError(SafePassageError):
    """A model file or a model pack (manifest plus files) cannot be used."""


class ManifestError(ModelPackError, InvalidInput):
    """A model manifest is missing, unreadable or invalid, or lacks an entry asked for."""


class ModelFileMissing(ModelPackError, FailedPrecondition):
    """A model weights file is not where its manifest or the deployment says it is."""


class ModelHashMismatch(ModelPackError, DataIntegrityError):
    """A model file's SHA-256 differs from the value its manifest pins."""


class ModelShapeMismatch(ModelPackError, InvalidInput):
    """A model file's graph or arrays disagree with its manifest entry."""
