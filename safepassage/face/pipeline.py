"""The face pipeline: detect -> landmarks -> align -> embed, behind small interfaces.

Which backend fills each stage is explicit configuration (`PipelineSettings`
naming manifest entries), never guessed from a graph. The embedder's manifest
says how its chips are aligned: ``dlib_chip`` (dlib's 5-point landmarks from the
regression-tree model on a dlib-geometry box, 150x150 chip) or ``arcface_112``
(the detector's own five points, the ArcFace template).

Edge devices (safepassage.camera_edge) and the server (`safepassage.face.onnx_embedder`)
run this same pipeline from the same verified model pack, so their embeddings share one space.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from safepassage.face.alignment import arcface_chip, dlib_chip
from safepassage.face.box_mapping import to_dlib_box
from safepassage.face.chip_embedder import EmbedderSpec, OnnxChipEmbedder
from safepassage.face.detection import CenterFaceDetector, Detection
from safepassage.face.errors import ManifestError, PipelineInputError
from safepassage.face.landmarks import ShapePredictorLandmarker
from safepassage.face.manifest import ModelPack

log = logging.getLogger(__name__)
RgbImage = npt.NDArray[np.uint8]
DlibBox = tuple[int, int, int, int]


class Detector(Protocol):
    def detect(self, frame: RgbImage) -> list[Detection]: ...


class Landmarker(Protocol):
    def landmarks(self, image: RgbImage, boxes: Sequence[DlibBox]) -> npt.NDArray[np.float32]: ...


class ChipEmbedder(Protocol):
    @property
    def spec(self) -> EmbedderSpec: ...

    def embed(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class FaceEmbedding:
    """One face of a frame: where it is, how sure the detector was, and its embedding."""

    box: tuple[float, float, float, float]  # left, top, right, bottom (exclusive), frame pixels
    score: float
    points: npt.NDArray[np.float32]  # (5, 2): the detector's eyes, nose, mouth corners
    landmarks: npt.NDArray[np.float32] | None  # (5, 2): dlib's points, for dlib_chip alignment
    embedding: npt.NDArray[np.float32]


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over calls; for benchmarks and health figures."""

    detect: float = 0.0
    landmarks: float = 0.0
    align: float = 0.0
    embed: float = 0.0
    frames: int = 0
    faces: int = 0

    def per_face_ms(self) -> dict[str, float]:
        faces = max(self.faces, 1)
        return {
            "detect_per_frame": 1000 * self.detect / max(self.frames, 1),
            "landmarks": 1000 * self.landmarks / faces,
            "align": 1000 * self.align / faces,
            "embed": 1000 * self.embed / faces,
        }


@dataclass(frozen=True)
class PipelineSettings:
    """Which manifest entries fill the stages, and the detector's operating point."""

    model_dir: Path
    detector: str = "centerface"
    landmarker: str = "dlib-shape-predictor-5"
    embedder: str = "dlib-resnet-v1"
    detect_max_side: int = 640
    score_threshold: float = 0.5
    min_face: int = 20
    threads: int = 1


class FacePipeline:
    def __init__(
        self, detector: Detector, embedder: ChipEmbedder, landmarker: Landmarker | None = None
    ) -> None:
        if embedder.spec.alignment == "dlib_chip" and landmarker is None:
            raise ManifestError(
                f"embedder {embedder.spec.name} aligns with dlib_chip, which needs a landmarker"
            )
        self.detector = detector
        self.embedder = embedder
        self.landmarker = landmarker
        self.times = StageTimes()

    @property
    def spec(self) -> EmbedderSpec:
        return self.embedder.spec

    def process(self, frame: RgbImage) -> list[FaceEmbedding]:
        """Every face of an RGB frame, in detector-score order."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise PipelineInputError(f"frame must be uint8 HxWx3 RGB; got {frame.dtype} {frame.shape}")
        started = time.perf_counter()
        detections = self.detector.detect(frame)
        detected = time.perf_counter()
        self.times.detect += detected - started
        self.times.frames += 1
        if not detections:
            return []
        return self.embed_detections(frame, detections)

    def embed_detections(self, frame: RgbImage, detections: Sequence[Detection]) -> list[FaceEmbedding]:
        """Landmarks, chips and embeddings for faces already detected in `frame`."""
        spec = self.embedder.spec
        started = time.perf_counter()
        landmarks: npt.NDArray[np.float32] | None = None
        if spec.alignment == "dlib_chip":
            assert self.landmarker is not None
            landmarks = self.landmarker.landmarks(frame, [to_dlib_box(d) for d in detections])
        marked = time.perf_counter()
        if landmarks is not None:
            chips = [
                dlib_chip(frame, lm, size=spec.input_size[0], padding=spec.chip_padding) for lm in landmarks
            ]
        else:
            chips = [arcface_chip(frame, d.points, size=spec.input_size[0]) for d in detections]
        aligned = time.perf_counter()
        embeddings = self.embedder.embed(np.stack(chips))
        embedded = time.perf_counter()
        self.times.landmarks += marked - started
        self.times.align += aligned - marked
        self.times.embed += embedded - aligned
        self.times.faces += len(detections)
        return [
            FaceEmbedding(
                box=d.box,
                score=d.score,
                points=d.points,
                landmarks=None if landmarks is None else landmarks[i],
                embedding=embeddings[i],
            )
            for i, d in enumerate(detections)
        ]


def load_pipeline(settings: PipelineSettings) -> FacePipeline:
    """Build the pipeline from a verified model pack (every file checked against its sha256)."""
    pack = ModelPack.load(settings.model_dir)
    spec = EmbedderSpec.from_entry(pack.entry(settings.embedder))
    detector = CenterFaceDetector(
        pack.path_of(settings.detector),
        max_side=settings.detect_max_side,
        score_threshold=settings.score_threshold,
        min_face=settings.min_face,
        threads=settings.threads,
    )
    embedder = OnnxChipEmbedder(pack.path_of(settings.embedder), spec, threads=settings.threads)
    landmarker = None
    if spec.alignment == "dlib_chip":
        landmarker = ShapePredictorLandmarker(pack.path_of(settings.landmarker))
    log.info("face pipeline ready: %s, %s, %s", settings.detector, settings.landmarker, settings.embedder)
    return FacePipeline(detector, embedder, landmarker)
