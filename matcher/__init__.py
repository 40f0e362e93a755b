"""Galleries and FAISS search: 1:1, 1:N open-set and 1:few over reference ids and vectors.

The matcher knows nothing of people: only reference ids and vectors.
"""

from matcher.approximate import ApproximateIndex, ApproximateParams, recall_at_k
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
    ThresholdOrigin,
    ThresholdSource,
    Verification,
)
from matcher.gallery_index import GalleryIndex, RecallReport
from matcher.index import FlatIndex, VectorIndex, set_blas_threshold, set_search_threads
from matcher.index_policy import IndexPlan, IndexPolicy
from matcher.metric import Metric
from matcher.protection import TemplateTransform, TransformKeyring
from matcher.search import Hits, exact_search

__all__ = [
    "ApproximateIndex",
    "ApproximateParams",
    "BackendUnavailable",
    "BatchSettings",
    "BatchStats",
    "CalibrationSummary",
    "CalibrationUnavailable",
    "Candidate",
    "FlatIndex",
    "GalleryIndex",
    "GalleryInfo",
    "GalleryPurpose",
    "GallerySpec",
    "Hits",
    "Identification",
    "ImpostorScores",
    "IndexOverBudget",
    "IndexPlan",
    "IndexPolicy",
    "InvalidGalleryId",
    "InvalidReferenceId",
    "InvalidSearch",
    "InvalidVector",
    "Matcher",
    "MatcherError",
    "Metric",
    "MicroBatcher",
    "ProtectionKeyError",
    "RecallReport",
    "SearchLimits",
    "SnapshotRejected",
    "TemplateTransform",
    "ThresholdChoice",
    "ThresholdOrigin",
    "ThresholdSource",
    "TooManyReferences",
    "TransformKeyring",
    "VectorIndex",
    "Verification",
    "exact_search",
    "recall_at_k",
    "set_blas_threshold",
    "set_search_threads",
]
