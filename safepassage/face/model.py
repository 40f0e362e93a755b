"""Manifests of embedding models and the weights files they load, pinned by SHA-256.

A manifest says what a model's vectors mean (dimension, metric, a sensible
threshold) and exactly which bytes produce them. Galleries record the model
name and version of their templates; vectors of two different models are not
comparable, so the manifest is the thing to compare, not the backend class.

Weights are verified before they are loaded: a silently swapped or corrupted
file would still produce 128 plausible-looking numbers per face, and every
match against the gallery would be wrong.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass

from safepassage.core.metric import Metric
from safepassage.face.errors import ModelFileMissing, ModelHashMismatch

logger = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 1024 * 1024


def _check_sha256(value: str, filename: str) -> None:
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"{filename}: sha256 must be 64 lower-case hex digits")


@dataclass(frozen=True)
class WeightsFile:
    """A file a pipeline loads besides the embedding network (detector, landmarks)."""

    filename: str
    sha256: str
    licence: str
    source: str

    def __post_init__(self) -> None:
        _check_sha256(self.sha256, self.filename)


@dataclass(frozen=True)
class EmbeddingModel:
    """The manifest of an embedding model: what its vectors are and which bytes make them."""

    name: str
    version: str
    dimension: int
    metric: Metric
    default_threshold: float
    licence: str
    source: str
    filename: str
    sha256: str
    # The default of a new watchlist: 1:N search compares a probe with every template, so the 1:1
    # threshold's false matches add up with gallery size. None: a watchlist needs an explicit one.
    watchlist_threshold: float | None = None
    # Per-comparison false match rates measured at the two defaults (None: not measured); a
    # gallery's FPIR is estimated from them until it is calibrated.
    default_threshold_fmr: float | None = None
    watchlist_threshold_fmr: float | None = None

    def __post_init__(self) -> None:
        if self.dimension <= 0:
            raise ValueError(f"model {self.name}: dimension must be positive, got {self.dimension}")
        if not math.isfinite(self.default_threshold):
            raise ValueError(f"model {self.name}: default_threshold must be finite")
        if self.watchlist_threshold is not None and not math.isfinite(self.watchlist_threshold):
            raise ValueError(f"model {self.name}: watchlist_threshold must be finite")
        for rate in (self.default_threshold_fmr, self.watchlist_threshold_fmr):
            if rate is not None and not 0.0 <= rate <= 1.0:
                raise ValueError(f"model {self.name}: a false match rate must be in [0, 1]")
        _check_sha256(self.sha256, self.filename)


DLIB_RESNET_V1 = EmbeddingModel(
    name="dlib-resnet-v1",
    version="1",
    dimension=128,
    metric=Metric.L2,
    # dlib's documented same-person cut-off; the matcher may calibrate its own.
    default_threshold=0.6,
    licence="CC0-1.0",
    source="face_recognition_models 0.3.0 (dlib-models by Davis King)",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    # benchmarks/results/evaluation (LFW, 835 people, ONNX pipeline): at 0.6, 9,006 false matches in
    # 1,569,495 impostor comparisons (5.7e-3), a watchlist of 100 flags 43 % of strangers; at 0.5, 422
    # (2.7e-4): about 0.27 % of strangers at 10 templates, 2.7 % at 100 (FNMR 1:1 rises to 24 %).
    # Calibrating at the deployment's own FPIR (CalibrateGallery) replaces this estimate.
    watchlist_threshold=0.5,
    default_threshold_fmr=5.7e-3,
    watchlist_threshold_fmr=2.7e-4,
)

# The 5-point predictor only aligns the face chip for DLIB_RESNET_V1. The
# 68-point predictor shipped beside it is deliberately not used: it was trained
# on iBUG 300-W, whose licence excludes commercial use.
DLIB_FIVE_POINT_LANDMARKS = WeightsFile(
    filename="shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    licence="CC0-1.0",
    source="face_recognition_models 0.3.0 (dlib-models by Davis King)",
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so large weights stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: str | os.PathLike[str], weights: EmbeddingModel | WeightsFile) -> None:
    """Check that the file at ``path`` is byte-for-byte the pinned weights.

    Returns nothing on success; raises ModelFileMissing when there is no such
    file and ModelHashMismatch when its digest differs from the manifest.
    """
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        raise ModelFileMissing(f"weights file {weights.filename} not found at {os.fspath(path)}") from None
    except IsADirectoryError:
        raise ModelFileMissing(f"weights file {weights.filename}: {os.fspath(path)} is a directory") from None
    if actual != weights.sha256:
        raise ModelHashMismatch(
            f"weights file {os.fspath(path)} has SHA-256 {actual};"
            f" the manifest for {weights.filename} pins {weights.sha256}"
        )
    logger.debug("verified weights %s", weights.filename)
