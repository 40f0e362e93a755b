"""Edge capture clients for CCTV units and kiosks, and the face pipeline they run.

The pipeline (detect -> landmarks -> align -> embed) runs on ONNX Runtime and
numpy from a verified model pack; the server runs the same pipeline, so edge
and server embeddings share one space. This package imports nothing of the
server side (no dlib, faiss, matcher, enrolment).

    pipeline = load_pipeline(PipelineSettings(model_dir=Path("var/models")))
    for face in pipeline.process(rgb_frame):
        face.box, face.score, face.embedding
"""

from camera_edge.detection import CenterFaceDetector, Detection
from camera_edge.embedding import EmbedderSpec, OnnxEmbedder
from camera_edge.errors import (
    EdgeError,
    ManifestError,
    ModelFileMissing,
    ModelHashMismatch,
    ModelPackError,
    ModelShapeMismatch,
    PipelineInputError,
)
from camera_edge.landmarks import ShapePredictorLandmarker
from camera_edge.manifest import ModelEntry, ModelPack
from camera_edge.pipeline import (
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
