"""The server's image embedder on the ONNX face pipeline the edge runs too (`safepassage.face.pipeline`).

One embedding space serves everyone: edge devices and the server run the
same detector, landmarks, alignment and ONNX model, from the same verified
model pack. The dlib backend (`DlibEmbedder`) stays as the reference.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, TypedDict

from safepassage.core.metric import Metric
from safepassage.face.embedder import (
    DetectedFace,
    FaceBox,
    FaceSelection,
    RgbImage,
    check_rgb_image,
    choose_faces,
)
from safepassage.face.manifest import ModelPack
from safepassage.face.model import DLIB_RESNET_V1, EmbeddingModel
from safepassage.face.pipeline import FacePipeline, PipelineSettings, load_pipeline

log = logging.getLogger(__name__)


def _box(box: tuple[float, float, float, float], width: int, height: int) -> FaceBox:
    left, top, right, bottom = box
    return FaceBox(
        left=max(0, round(left)),
        top=max(0, round(top)),
        right=min(width, max(1, round(right))),
        bottom=min(height, max(1, round(bottom))),
    )


class _WatchlistDefaults(TypedDict):
    watchlist_threshold: float | None
    default_threshold_fmr: float | None
    watchlist_threshold_fmr: float | None


def _watchlist_defaults(name: str, params: Mapping[str, Any]) -> _WatchlistDefaults:
    """The manifest's watchlist threshold and measured rates; a pack built before they were written
    takes them from the built-in manifest of the same network (the pack converts its weights)."""

    def rate(key: str) -> float | None:
        return None if params.get(key) is None else float(params[key])

    if "watchlist_threshold" in params:
        return _WatchlistDefaults(
            watchlist_threshold=rate("watchlist_threshold"),
            default_threshold_fmr=rate("default_threshold_fmr"),
            watchlist_threshold_fmr=rate("watchlist_threshold_fmr"),
        )
    known = DLIB_RESNET_V1 if name == DLIB_RESNET_V1.name else None
    return _WatchlistDefaults(
        watchlist_threshold=known.watchlist_threshold if known else None,
        default_threshold_fmr=known.default_threshold_fmr if known else None,
        watchlist_threshold_fmr=known.watchlist_threshold_fmr if known else None,
    )


class OnnxEmbedder:
    """safepassage.face.Embedder over the FacePipeline.

    Thread safety: calls are serialised by a lock; onnxruntime sessions are
    thread-safe, but the pipeline's stage timers are not, and one call already
    uses the threads the pipeline was configured with.
    """

    def __init__(self, settings: PipelineSettings) -> None:
        self._pipeline: FacePipeline = load_pipeline(settings)
        spec = self._pipeline.spec
        entry = ModelPack.load(settings.model_dir).entry(settings.embedder)
        self._model = EmbeddingModel(
            name=spec.name,
            version=entry.version,
            dimension=spec.output_dim,
            metric=Metric(spec.metric),
            default_threshold=spec.default_threshold,
            licence=entry.licence,
            source=f"{entry.source.package} {entry.source.version}: {entry.source.path}",
            filename=entry.file,
            sha256=entry.sha256,
            **_watchlist_defaults(spec.name, entry.params),
        )
        self._lock = threading.Lock()

    @property
    def model(self) -> EmbeddingModel:
        return self._model

    @property
    def pipeline(self) -> FacePipeline:
        return self._pipeline

    def embed(self, image: RgbImage, selection: FaceSelection) -> list[DetectedFace]:
        image = check_rgb_image(image)
        height, width = image.shape[:2]
        with self._lock:
            detections = self._pipeline.detector.detect(image)
            boxes = [_box(d.box, width, height) for d in detections]
            chosen = choose_faces(boxes, selection)
            if not chosen:
                return []
            faces = self._pipeline.embed_detections(image, [detections[i] for i in chosen])
        return [DetectedFace(boxes[i], face.embedding) for i, face in zip(chosen, faces, strict=True)]
