"""ONNX-pipeline embeddings of real LFW faces, computed once per test run and shared.

Tests that need real face templates (calibration, template protection, ...)
ask the session-scoped ``lfw_embeddings`` fixture for them instead of each
decoding and embedding the same photos again:

    def test_x(lfw_embeddings):
        vector = lfw_embeddings.first_face("Tony_Blair")            # None if no face found
        vectors = lfw_embeddings.faces_of("Tony_Blair", limit=2)    # the faces found in the first 2 images

Embeddings are made lazily and memoised per image, so a run embeds the union
of what its tests asked for (the calibration test asks for 700 photos: about
30 s on one core, at ~40 ms a photo). The pipeline is the server's own
(`safepassage.face.onnx_embedder.OnnxEmbedder` over the verified model pack, one thread),
with the server's `LARGEST` face selection: deep-funneled LFW photos often hold
smaller bystanders, and the face the image is about is the large central one.

Identity labels come from the folder names (comparable only within lfw/; see
../shared/data/faces/README.md). The fixture is registered in tests/conftest.py
through ``pytest_plugins``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.core.metric import Metric
from safepassage.face import FaceSelection, ImageLimits, NoFaceFound, decode_image
from safepassage.face.onnx_embedder import OnnxEmbedder

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]


class LfwEmbeddings:
    """Memoised embeddings of the LFW photos under ``lfw_root`` (one folder per identity)."""

    def __init__(self, lfw_root: Path, model_dir: Path) -> None:
        from safepassage.face.pipeline import PipelineSettings

        self.root = lfw_root
        self._embedder = OnnxEmbedder(PipelineSettings(model_dir=model_dir, threads=1))
        model = self._embedder.model
        self.metric: Metric = model.metric
        self.dimension: int = model.dimension
        self.default_threshold: float = model.default_threshold
        self._images: dict[str, list[Path]] = {
            folder.name: sorted(folder.glob("*.jpg"))
            for folder in sorted(p for p in lfw_root.iterdir() if p.is_dir())
        }
        self._cache: dict[Path, Vector | None] = {}
        self._limits = ImageLimits()

    @property
    def embedded(self) -> int:
        """How many images this run has embedded so far (faces found or not)."""
        return len(self._cache)

    def identities(self, min_images: int = 1) -> list[str]:
        """Identity names (sorted) with at least ``min_images`` photos."""
        return [name for name, files in self._images.items() if len(files) >= min_images]

    def images_of(self, identity: str) -> list[Path]:
        return list(self._images[identity])

    def embed(self, path: Path) -> Vector | None:
        """The largest face of one photo (read-only float32), or None when no face is found."""
        if path not in self._cache:
            pixels = decode_image(path.read_bytes(), self._limits)
            try:
                [face] = self._embedder.embed(pixels, FaceSelection.LARGEST)
            except NoFaceFound:
                log.info("no face found in %s", path.name)
                self._cache[path] = None
            else:
                vector = np.array(face.embedding, dtype=np.float32)
                vector.setflags(write=False)
                self._cache[path] = vector
        return self._cache[path]

    def faces_of(self, identity: str, limit: int | None = None) -> list[Vector]:
        """Embeddings of the first ``limit`` photos of ``identity`` (name order), skipping faceless ones."""
        found = (self.embed(path) for path in self._images[identity][:limit])
        return [vector for vector in found if vector is not None]

    def first_face(self, identity: str) -> Vector | None:
        """The embedding of the identity's first photo (name order), or None if it shows no face."""
        return self.embed(self._images[identity][0])

    def first_faces(self, identities: list[str]) -> tuple[list[str], npt.NDArray[np.float32]]:
        """First-photo embeddings of several identities as an (n, d) array, with the names kept
        (identities whose first photo shows no face are left out)."""
        kept: list[str] = []
        rows: list[Vector] = []
        for name in identities:
            vector = self.first_face(name)
            if vector is not None:
                kept.append(name)
                rows.append(vector)
        array = np.stack(rows) if rows else np.zeros((0, self.dimension), np.float32)
        return kept, array


@pytest.fixture(scope="session")
def lfw_embeddings(faces_dir: Path, model_dir: Path) -> LfwEmbeddings:
    return LfwEmbeddings(faces_dir / "lfw", model_dir)
