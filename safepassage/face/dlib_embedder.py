"""The dlib backend: HOG face detection, 5-point alignment, ResNet descriptors.

These are the calls face_recognition makes for ``face_locations(model="hog")``
and ``face_encodings(model="small", num_jitters=1)``, made on dlib directly
(same vectors, except for faces cut by the frame edge: face_recognition clips
the box before landmarking, we do not), because importing face_recognition would

* set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` for the whole process,
  so ``decode_image`` would silently accept truncated uploads;
* load the 68-point landmark model (iBUG 300-W licence, no commercial use)
  and the CNN detector, ~100 MB that this backend never uses;
* ``quit()`` the process if the models package is missing.

Detection scale depends on the image, because HOG only finds faces of at
least ~80 px (its window) and its cost grows with the pixel count:

* max side <= ``upsample_max_side`` (640): detect at 2x, finding ~40 px faces;
* max side <= ``detect_max_side`` (1600): detect at 1x;
* larger: detect on a copy downscaled to ``detect_max_side`` and map the
  boxes back. Landmarks and descriptors are always computed on the full
  image: the face chip is resampled to 150x150 either way, the cost is the
  same (~75 ms per face) and the descriptor does not lose the detail.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from safepassage.face.embedder import (
    DetectedFace,
    FaceBox,
    FaceSelection,
    RgbImage,
    check_rgb_image,
    choose_faces,
)
from safepassage.face.errors import ModelFileMissing
from safepassage.face.model import DLIB_FIVE_POINT_LANDMARKS, DLIB_RESNET_V1, EmbeddingModel, verify_weights

logger = logging.getLogger(__name__)

# face_recognition passes 1; dlib jitters only for values > 1, so this means
# "no jitter" and keeps embeddings deterministic.
_NUM_JITTERS = 1


class DlibEmbedder:
    """``Embedder`` backed by dlib's ResNet face descriptor (128-D, L2, threshold 0.6).

    The constructor verifies both weights files against their pinned SHA-256
    and then loads them (~0.4 s of CPU); build one per process and share it.

    Thread safety: ``embed`` may be called from any number of threads. dlib's
    models are not safe for concurrent use, so detection and description each
    run under their own lock: two calls overlap (one detecting while the other
    describes), no more. Measured here, dlib releases the GIL while detecting
    but mostly holds it while describing; for more parallelism use processes.
    """

    def __init__(
        self,
        *,
        models_dir: str | os.PathLike[str] | None = None,
        upsample_max_side: int = 640,
        detect_max_side: int = 1600,
    ) -> None:
        """Load the dlib models.

        ``models_dir`` holds the two ``.dat`` files; by default the directory of
        the installed face_recognition_models package. Raises ModelFileMissing
        or ModelHashMismatch when a file is absent or not the pinned one.
        """
        if detect_max_side < 80 or not 0 <= upsample_max_side <= detect_max_side:
            raise ValueError(
                "need 0 <= upsample_max_side <= detect_max_side and detect_max_side >= 80,"
                f" got {upsample_max_side} and {detect_max_side}"
            )
        self._upsample_max_side = upsample_max_side
        self._detect_max_side = detect_max_side
        directory = Path(models_dir) if models_dir is not None else _installed_models_dir()
        recogniser_path = directory / DLIB_RESNET_V1.filename
        landmarks_path = directory / DLIB_FIVE_POINT_LANDMARKS.filename
        started = time.perf_counter()
        # Verify before loading, so a tampered file never reaches dlib's parser.
        verify_weights(recogniser_path, DLIB_RESNET_V1)
        verify_weights(landmarks_path, DLIB_FIVE_POINT_LANDMARKS)

        # Imported here, not at module level: importing faces must stay cheap
        # and must not load native code or models.
        import dlib

        self._dlib: Any = dlib
        self._detector: Any = dlib.get_frontal_face_detector()
        self._landmarks: Any = dlib.shape_predictor(os.fspath(landmarks_path))
        self._recogniser: Any = dlib.face_recognition_model_v1(os.fspath(recogniser_path))
        self._detect_lock = threading.Lock()
        self._describe_lock = threading.Lock()
        logger.info(
            "loaded %s from %s in %.0f ms",
            DLIB_RESNET_V1.name,
            directory,
            (time.perf_counter() - started) * 1000,
        )

    @property
    def model(self) -> EmbeddingModel:
        return DLIB_RESNET_V1

    def embed(self, image: RgbImage, selection: FaceSelection) -> list[DetectedFace]:
        """See ``Embedder.embed``. Raises ValueError if ``image`` is not HxWx3 uint8."""
        image = check_rgb_image(image)
        height, width = image.shape[:2]
        started = time.perf_counter()
        with self._detect_lock:
            rects = self._detect(image)
        boxes = [_clip(rect, width, height) for rect in rects]
        chosen = choose_faces(boxes, selection)
        with self._describe_lock:
            vectors = self._describe(image, [rects[i] for i in chosen])
        faces = [DetectedFace(boxes[i], vector) for i, vector in zip(chosen, vectors, strict=True)]
        logger.debug(
            "%dx%d image: %d faces detected, %d embedded in %.0f ms",
            width,
            height,
            len(boxes),
            len(faces),
            (time.perf_counter() - started) * 1000,
        )
        return faces

    def _detect(self, image: RgbImage) -> list[Any]:
        """dlib rectangles in full-resolution coordinates (may extend past the edges)."""
        height, width = image.shape[:2]
        side = max(height, width)
        if side <= self._upsample_max_side:
            return list(self._detector(image, 1))
        if side <= self._detect_max_side:
            return list(self._detector(image, 0))
        scale = self._detect_max_side / side
        small_width = max(1, round(width * scale))
        small_height = max(1, round(height * scale))
        # INTER_AREA averages source pixels: no aliasing that HOG gradients would see.
        small = cv2.resize(image, (small_width, small_height), interpolation=cv2.INTER_AREA)
        x_scale = width / small_width
        y_scale = height / small_height
        # dlib rectangles are inclusive; map the covered pixel span, not the corners.
        return [
            self._dlib.rectangle(
                math.floor(rect.left() * x_scale),
                math.floor(rect.top() * y_scale),
                math.ceil((rect.right() + 1) * x_scale) - 1,
                math.ceil((rect.bottom() + 1) * y_scale) - 1,
            )
            for rect in self._detector(small, 0)
        ]

    def _describe(self, image: RgbImage, rects: list[Any]) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
        if not rects:
            return []
        shapes = self._dlib.full_object_detections()
        for rect in rects:
            shapes.append(self._landmarks(image, rect))
        descriptors = self._recogniser.compute_face_descriptor(image, shapes, _NUM_JITTERS)
        return [np.asarray(descriptor, dtype=np.float32) for descriptor in descriptors]


def _clip(rect: Any, width: int, height: int) -> FaceBox:
    # HOG boxes of faces at the frame edge reach outside the image; the
    # landmark model is given the unclipped rectangle, callers get pixels.
    left = min(max(int(rect.left()), 0), width - 1)
    top = min(max(int(rect.top()), 0), height - 1)
    right = max(min(int(rect.right()) + 1, width), left + 1)
    bottom = max(min(int(rect.bottom()) + 1, height), top + 1)
    return FaceBox(left, top, right, bottom)


def _installed_models_dir() -> Path:
    # find_spec locates the package without executing it: its __init__ imports
    # pkg_resources, which warns and is gone from setuptools >= 82.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissing(
            "the face_recognition_models package is not installed; install it or pass models_dir"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"
