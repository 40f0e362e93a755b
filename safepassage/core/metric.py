"""Metrics: how two embeddings compare, and which way a score runs.

Shared by model manifests (face: built-in and model pack) and the matcher. dlib's
descriptor compares by Euclidean distance (lower is closer); ArcFace-class
models by cosine similarity (higher is closer). Everything that orders or
thresholds a score asks the metric, so no caller has to know which way round
it runs.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt


class Metric(enum.StrEnum):
    L2 = "l2"
    COSINE = "cosine"

    @property
    def higher_is_closer(self) -> bool:
        return self is Metric.COSINE

    def is_match(self, score: float, threshold: float) -> bool:
        if self.higher_is_closer:
            return score >= threshold
        return score <= threshold

    def matches(self, scores: npt.NDArray[np.float32], threshold: float) -> npt.NDArray[np.bool_]:
        if self.higher_is_closer:
            return scores >= threshold
        return scores <= threshold

    def worst_score(self) -> float:
        """The score of an empty result slot: never a match."""
        return float("-inf") if self.higher_is_closer else float("inf")
