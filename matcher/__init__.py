"""Galleries and FAISS search: 1:1, 1:N open-set and 1:few over reference ids and vectors.

The matcher knows nothing of people: only reference ids and vectors.
"""

from matcher.engine import Matcher, SearchLimits
from matcher.errors import (
    InvalidGalleryId,
    InvalidReferenceId,
    InvalidSearch,
    InvalidVector,
    MatcherError,
    SnapshotRejected,
    TooManyReferences,
)
from matcher.gallery import (
    Candidate,
    GalleryInfo,
    GalleryPurpose,
    GallerySpec,
    Identification,
    Verification,
)
from matcher.index import FlatIndex, VectorIndex, set_search_threads
from matcher.metric import Metric
from matcher.search import Hits, exact_search

__all__ = [
    "Candidate",
    "FlatIndex",
    "GalleryInfo",
    "GalleryPurpose",
    "GallerySpec",
    "Hits",
    "Identification",
    "InvalidGalleryId",
    "InvalidReferenceId",
    "InvalidSearch",
    "InvalidVector",
    "Matcher",
    "MatcherError",
    "Metric",
    "SearchLimits",
    "SnapshotRejected",
    "TooManyReferences",
    "VectorIndex",
    "Verification",
    "exact_search",
    "set_search_threads",
]
