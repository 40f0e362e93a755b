"""Helpers shared by the store tests."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import numpy.typing as npt

from safepassage.store import GalleryRecord

DIMENSION = 16


def vector_for(reference_id: str, dimension: int = DIMENSION) -> npt.NDArray[np.float32]:
    """A deterministic vector per reference id, so a reader can check what it got."""
    seed = int.from_bytes(hashlib.sha256(reference_id.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


def make_record(gallery_id: str = "g", dimension: int = DIMENSION) -> GalleryRecord:
    return GalleryRecord(
        gallery_id=gallery_id,
        purpose="watchlist",
        model_name="test-model",
        dimension=dimension,
        metric="cosine",
        threshold=0.5,
        created_at=time.time(),
    )
