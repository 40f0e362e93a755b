"""Embeddings and edge quality scores of labelled images, through the service's own code paths.

Two pipelines, scored side by side:

- ``onnx``: ``safepassage.face.onnx_embedder.OnnxEmbedder`` built as ``server.settings_conversion.embedder``
  builds it from the model pack (CenterFace detection, 5-point landmarks, ONNX ResNet descriptor);
- ``face_recognition``: ``safepassage.face.DlibEmbedder``, the dlib reference (the calls face_recognition
  makes).

Both take the LARGEST face of an image (``FaceSelection.LARGEST``): LFW images often hold bystanders.
An image with no face gets no embedding (``vector is None``): callers count it as a failure to enrol
or to search, never drop it silently.

Quality is the edge's score (``safepassage.camera_edge.quality.assess``) of the ONNX detector's largest face,
for both pipelines: dlib's HOG detector gives no five points or confidence to assess, so the dlib side is
split by the ONNX side's quality of the same image. It is None where the ONNX detector found no face.

Embeddings are cached per pipeline in ``<cache_dir>/embeddings-<pipeline>.npz`` keyed by each file's
SHA-256 and tied to the model's weights digest, so a rerun embeds only new images.

Other configurations (another detector operating point, say) are evaluated beside these under their own
name with ``EmbeddingRunner.register``. A file that cannot be read or decoded is listed in
``EmbeddingRunner.unreadable`` with the reason (the run then leaves it out of the set), never a crash.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric
from safepassage.face import (
    DlibEmbedder,
    Embedder,
    EmbeddingModel,
    FaceBox,
    FaceSelection,
    ImageLimits,
    decode_image,
)
from safepassage.face.detection import Detection
from safepassage.face.embedder import choose_faces
from safepassage.face.errors import FacesError, NoFaceFound
from safepassage.matcher.search import pairwise_score

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]
PIPELINES = ("onnx", "face_recognition")


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """One image through one pipeline: its embedding (None: no face) and its edge quality."""

    path: Path
    sha256: str
    vector: Vector | None
    quality: float | None


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Every image of a run through one pipeline, by path, with the model that made the vectors."""

    pipeline: str
    model: EmbeddingModel
    by_path: Mapping[Path, ImageEmbedding]
    embedded_now: int = 0  # images not found in the cache (0 on a fully cached rerun)

    @property
    def metric(self) -> Metric:
        return self.model.metric

    @property
    def higher_is_closer(self) -> bool:
        return self.model.metric.higher_is_closer

    def vector(self, path: Path) -> Vector | None:
        return self.by_path[path].vector

    def quality(self, path: Path) -> float | None:
        return self.by_path[path].quality

    def not_found(self) -> list[Path]:
        return [path for path, item in self.by_path.items() if item.vector is None]

    def score(self, first: Path, second: Path) -> float | None:
        """The 1:1 score by the model's metric, as the matcher scores; None if a face is missing."""
        a, b = self.vector(first), self.vector(second)
        if a is None or b is None:
            return None
        return pairwise_score(a, b, self.metric)


class EmbeddingRunner:
    """Builds each pipeline's embedder once and embeds images through it, with the cache.

    ``model_dir`` is the model pack (var/models, built by ``make setup``); ``cache_dir`` None: no cache.
    """

    def __init__(self, model_dir: Path, cache_dir: Path | None = None) -> None:
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self._onnx: Embedder | None = None
        self._dlib: Embedder | None = None
        self._registered: dict[str, Embedder] = {}
        self._limits = ImageLimits()
        self._quality: dict[str, float | None] = {}  # by sha256: the dlib side reuses the ONNX side's
        # Files that could not be read or decoded (corrupt past a sound header), with the reason: no
        # vector here, listed in the report and left out of the set by the run, never cached, never a crash.
        self.unreadable: dict[Path, str] = {}

    def register(self, pipeline: str, embedder: Embedder) -> None:
        """Evaluate ``embedder`` as ``pipeline`` too (its own cache file; quality stays the ONNX side's)."""
        if pipeline in PIPELINES or pipeline in self._registered:
            raise ValueError(f"pipeline {pipeline!r} is already known")
        self._registered[pipeline] = embedder

    def known(self) -> tuple[str, ...]:
        return (*PIPELINES, *self._registered)

    def embedder(self, pipeline: str) -> Embedder:
        if pipeline in self._registered:
            return self._registered[pipeline]
        if pipeline == "onnx":
            if self._onnx is None:
                from safepassage.face.onnx_embedder import OnnxEmbedder
                from safepassage.face.pipeline import PipelineSettings

                # settings_conversion.embedder's defaults (safepassage.server.config.FacesConfig).
                self._onnx = OnnxEmbedder(PipelineSettings(model_dir=self.model_dir))
            return self._onnx
        if pipeline == "face_recognition":
            if self._dlib is None:
                self._dlib = DlibEmbedder()
            return self._dlib
        raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(self.known())}")

    def embed(
        self, pipeline: str, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None
    ) -> Embeddings:
        """Embed every image of ``paths`` (duplicates embedded once) through ``pipeline``."""
        embedder = self.embedder(pipeline)
        model = embedder.model
        cached = self._load_cache(pipeline, model)
        found: dict[Path, ImageEmbedding] = {}
        fresh = 0
        unique = list(dict.fromkeys(paths))
        for done, path in enumerate(unique, 1):
            try:
                data = path.read_bytes()
            except OSError as error:  # gone, a folder, no permission: listed, counted as no face
                self.unreadable[path] = error.strerror or type(error).__name__
                found[path] = ImageEmbedding(path, "", None, None)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in cached:
                vector, quality = cached[digest]
            else:
                try:
                    vector, quality = self._embed_one(embedder, data, digest)
                except FacesError as error:
                    self.unreadable[path] = str(error)
                    vector, quality = None, None
                else:
                    cached[digest] = (vector, quality)
                    fresh += 1
            found[path] = ImageEmbedding(path, digest, vector, quality)
            if progress is not None:
                progress(done, len(unique))
        if fresh:
            self._save_cache(pipeline, model, cached)
        log.info(
            "%s: %d images, %d embedded now, %d cached", pipeline, len(unique), fresh, len(unique) - fresh
        )
        return Embeddings(pipeline, model, found, fresh)

    def _embed_one(self, embedder: Embedder, data: bytes, digest: str) -> tuple[Vector | None, float | None]:
        pixels = decode_image(data, self._limits)  # the service's reader: the format from the bytes
        try:
            (face,) = embedder.embed(pixels, FaceSelection.LARGEST)
            vector: Vector | None = np.array(face.embedding, dtype=np.float32)
        except NoFaceFound:
            vector = None
        if digest not in self._quality:
            self._quality[digest] = self._onnx_quality(pixels)
        return vector, self._quality[digest]

    def _onnx_quality(self, pixels: npt.NDArray[np.uint8]) -> float | None:
        """The edge quality of the face the ONNX pipeline picks (largest, chosen by the same rule)."""
        from safepassage.camera_edge.quality import assess
        from safepassage.face.onnx_embedder import OnnxEmbedder

        onnx = self.embedder("onnx")
        assert isinstance(onnx, OnnxEmbedder)
        detections: list[Detection] = onnx.pipeline.detector.detect(pixels)
        if not detections:
            return None
        height, width = pixels.shape[:2]
        boxes = [_clipped(d, width, height) for d in detections]
        (chosen,) = choose_faces(boxes, FaceSelection.LARGEST)
        return assess(pixels, detections[chosen]).overall

    def _cache_path(self, pipeline: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"embeddings-{pipeline}.npz"

    def _load_cache(
        self, pipeline: str, model: EmbeddingModel
    ) -> dict[str, tuple[Vector | None, float | None]]:
        path = self._cache_path(pipeline)
        if path is None or not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as data:
            if str(data["model_sha256"]) != model.sha256:
                log.info("%s: cache made by another model; embedding again", path)
                return {}
            keys = [str(k) for k in data["sha256"]]
            vectors, found, quality = data["vectors"], data["found"], data["quality"]
            return {
                key: (
                    np.array(vectors[i], np.float32) if found[i] else None,
                    float(quality[i]) if np.isfinite(quality[i]) else None,
                )
                for i, key in enumerate(keys)
            }

    def _save_cache(
        self, pipeline: str, model: EmbeddingModel, table: Mapping[str, tuple[Vector | None, float | None]]
    ) -> None:
        path = self._cache_path(pipeline)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(table)
        vectors = np.zeros((len(keys), model.dimension), np.float32)
        found = np.zeros(len(keys), bool)
        quality = np.full(len(keys), np.nan)
        for i, key in enumerate(keys):
            vector, score = table[key]
            if vector is not None:
                vectors[i], found[i] = vector, True
            if score is not None:
                quality[i] = score
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(
            temporary,
            sha256=np.array(keys, dtype=str),
            vectors=vectors,
            found=found,
            quality=quality,
            model_sha256=np.array(model.sha256),
        )
        temporary.replace(path)  # a run killed mid-write leaves the old cache, not half a new one


def _clipped(detection: Detection, width: int, height: int) -> FaceBox:
    # The box OnnxEmbedder compares by area when it picks the largest face (face.onnx_embedder._box).
    left, top, right, bottom = detection.box
    return FaceBox(
        left=max(0, round(left)),
        top=max(0, round(top)),
        right=min(width, max(1, round(right))),
        bottom=min(height, max(1, round(bottom))),
    )
