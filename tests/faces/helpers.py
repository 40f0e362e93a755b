"""Small helpers shared by the faces tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.face import DetectedFace, DlibEmbedder, FaceSelection, ImageLimits, decode_image


def read(faces_dir: Path, relative: str) -> bytes:
    return (faces_dir / relative).read_bytes()


def pixels(faces_dir: Path, relative: str) -> npt.NDArray[np.uint8]:
    return decode_image(read(faces_dir, relative), ImageLimits())


def embed_largest(embedder: DlibEmbedder, faces_dir: Path, relative: str) -> DetectedFace:
    [face] = embedder.embed(pixels(faces_dir, relative), FaceSelection.LARGEST)
    return face


def distance(a: DetectedFace, b: DetectedFace) -> float:
    return float(np.linalg.norm(a.embedding - b.embedding))
