"""Edge capture clients for CCTV units and kiosks, and the face pipeline they run.

The pipeline (detect -> landmarks -> align -> embed) runs on ONNX Runtime and
numpy from a verified model pack; the server runs the same pipeline, so edge
and server embeddings share one space. This package imports nothing of the
server side (no dlib, faiss, matcher, enrolment).

    pipeline = load_pipeline(PipelineSettings(model_dir=Path("var/models")))
    for face in pipeline.process(rgb_frame):
        face.box, face.score, face.embedding
"""

from safepassage.camera_edge.detection import CenterFaceDetector, Detection
from safepassage.camera_edge.embedding import EmbedderSpec, OnnxEmbedder
from safepassage.camera_edge.errors import (
    EdgeError,
    ManifestError,
    ModelFileMissing,
    ModelHashMismatch,
    ModelPackError,
    ModelShapeMismatch,
    PipelineInputError,
)
from safepassage.camera_edge.landmarks import ShapePredictorLandmarker
from safepassage.camera_edge.manifest import ModelEntry, ModelPack
from safepassage.camera_edge.pipeline import (
    Detector,
    Embedder,
    FaceEmbedding,
    FacePipeline,
    Landmarker,
    PipelineSettings,
    StageTimes,
    load_pipeline,
)

__all__ = [
    "CenterFaceDetector",
    "Detection",
    "Detector",
    "EdgeError",
    "Embedder",
    "EmbedderSpec",
    "FaceEmbedding",
    "FacePipeline",
    "Landmarker",
    "ManifestError",
    "ModelEntry",
    "ModelFileMissing",
    "ModelHashMismatch",
    "ModelPack",
    "ModelPackError",
    "ModelShapeMismatch",
    "OnnxEmbedder",
    "PipelineInputError",
    "PipelineSettings",
    "ShapePredictorLandmarker",
    "StageTimes",
    "load_pipeline",
]
