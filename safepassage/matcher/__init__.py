"""Galleries and FAISS search: 1:1, 1:N open-set and 1:few over reference ids and vectors.

The matcher knows nothing of people: only reference ids and vectors.
"""

from safepassage.matcher.approximate import ApproximateIndex, ApproximateParams, recall_at_k
from safepassage.matcher.batcher import BatchSettings, BatchStats, MicroBatcher
from safepassage.matcher.calibration import ImpostorScores
from safepassage.matcher.engine import Matcher
from safepassage.matcher.errors import (
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
from safepassage.matcher.gallery import (
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
    passes,
)
from safepassage.matcher.gallery_index import GalleryIndex, RecallReport
from safepassage.matcher.index import FlatIndex, VectorIndex, set_blas_threshold, set_search_threads
from safepassage.matcher.index_policy import IndexPlan, IndexPolicy
from safepassage.matcher.limits import SearchLimits
from safepassage.matcher.metric import Metric
from safepassage.matcher.protection import TemplateTransform, TransformKeyring
from safepassage.matcher.search import Hits, exact_search, pairwise_score

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
    "pairwise_score",
    "passes",
    "recall_at_k",
    "set_blas_threshold",
    "set_search_threads",
]
