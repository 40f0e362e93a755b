"""Galleries and FAISS search: 1:1, 1:N open-set and 1:few over reference ids and vectors.

The matcher knows nothing of people: only reference ids and vectors.
"""

from matcher.batcher import BatchSettings, BatchStats, MicroBatcher
from matcher.calibration import ImpostorScores
from matcher.engine import Matcher, SearchLimits
from matcher.errors import (
    BackendUnavailable,
    CalibrationUnavailable,
    IndexOverBudget,
    InvalidGalleryId,
    InvalidReferenceId,
    InvalidSearch,
    InvalidVector,
    MatcherError,
    ProtectionKeyError,
    SnapshotRejected,
    TooManyReferences,
)
from matcher.gallery import (
    CalibrationSummary,
    Candidate,
    GalleryInfo,
    GalleryPurpose,
    GallerySpec,
    Identification,
    ThresholdChoice,
    ThresholdSource,
    Verification,
)
from matcher.index import FlatIndex, VectorIndex, set_blas_threshold, set_search_threads
from matcher.metric import Metric
from matcher.protection import TemplateTransform, TransformKeyring
from matcher.search import Hits, exact_search

__all__ = [
    "BackendUnavailable",
    "BatchSettings",
    "BatchStats",
    "CalibrationSummary",
    "CalibrationUnavailable",
    "Candidate",
    "FlatIndex",
    "GalleryInfo",
    "GalleryPurpose",
    "GallerySpec",
    "Hits",
    "Identification",
    "ImpostorScores",
    "IndexOverBudget",
    "InvalidGalleryId",
    "InvalidReferenceId",
    "InvalidSearch",
    "InvalidVector",
    "Matcher",
    "MatcherError",
    "Metric",
    "MicroBatcher",
    "ProtectionKeyError",
    "SearchLimits",
    "SnapshotRejected",
    "TemplateTransform",
    "ThresholdChoice",
    "ThresholdSource",
    "TooManyReferences",
    "TransformKeyring",
    "VectorIndex",
    "Verification",
    "exact_search",
    "set_blas_threshold",
    "set_search_threads",
]
