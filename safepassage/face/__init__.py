"""Faces: image bytes in, face embeddings out; the face pipeline the edge and the server both run.

    pixels = decode_image(data, ImageLimits())
    embedder = DlibEmbedder()            # loads and verifies model weights
    [face] = embedder.embed(pixels, FaceSelection.SINGLE)

Backends implement ``Embedder``; callers depend on that protocol and on the
model manifest (``embedder.model``), never on a backend's internals.
Importing this package loads no native code and no model.

The ONNX pipeline (detect -> landmarks -> align -> embed, from a verified model
pack) is imported from its modules, so that this package's import stays light:

    pipeline = load_pipeline(PipelineSettings(model_dir=Path("var/models")))  # safepassage.face.pipeline
    for face in pipeline.process(rgb_frame):
        face.box, face.score, face.embedding
"""

from safepassage.core.image_formats import READ_FORMATS
from safepassage.core.metric import Metric
from safepassage.face.dlib_embedder import DlibEmbedder
from safepassage.face.embedder import DetectedFace, Embedder, FaceBox, FaceSelection
from safepassage.face.errors import (
    FacesError,
    ImageDecodeError,
    ImageTooLarge,
    ImageTooSmall,
    ManifestError,
    ModelFileMissing,
    ModelHashMismatch,
    ModelPackError,
    ModelShapeMismatch,
    MultipleFacesFound,
    NoFaceFound,
    PipelineInputError,
)
from safepassage.face.image import (
    ImageHeader,
    ImageLimits,
    decode_image,
    read_header,
    sniff_format,
)
from safepassage.face.model import (
    DLIB_FIVE_POINT_LANDMARKS,
    DLIB_RESNET_V1,
    EmbeddingModel,
    WeightsFile,
    file_sha256,
    verify_weights,
)
from safepassage.face.reference_crop import REFERENCE_SIDE, reference_crop

__all__ = [
    "DLIB_FIVE_POINT_LANDMARKS",
    "DLIB_RESNET_V1",
    "READ_FORMATS",
    "REFERENCE_SIDE",
    "DetectedFace",
    "DlibEmbedder",
    "Embedder",
    "EmbeddingModel",
    "FaceBox",
    "FaceSelection",
    "FacesError",
    "ImageDecodeError",
    "ImageHeader",
    "ImageLimits",
    "ImageTooLarge",
    "ImageTooSmall",
    "ManifestError",
    "Metric",
    "ModelFileMissing",
    "ModelHashMismatch",
    "ModelPackError",
    "ModelShapeMismatch",
    "MultipleFacesFound",
    "NoFaceFound",
    "PipelineInputError",
    "WeightsFile",
    "decode_image",
    "file_sha256",
    "read_header",
    "reference_crop",
    "sniff_format",
    "verify_weights",
]
