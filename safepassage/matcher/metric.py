"""Metric helpers of the matcher; the Metric itself is shared (safepassage.core.metric)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric

__all__ = ["Metric", "normalise_rows"]


def normalise_rows(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Unit-length rows for cosine similarity; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)
