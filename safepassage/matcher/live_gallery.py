"""A gallery as the matcher holds it while it is live, and its configuration as the store keeps it.

The matcher keeps one `LiveGallery` per gallery of the store, from start-up or
creation until the gallery is deleted; everything cached about a gallery lives
on it, so deleting the gallery forgets all of it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safepassage import store
from safepassage.matcher.gallery import GalleryPurpose, GallerySpec
from safepassage.matcher.gallery_calibration import GalleryCalibration
from safepassage.matcher.index_loader import LiveIndex
from safepassage.matcher.metric import Metric
from safepassage.matcher.rwlock import ReadWriteLock

__all__ = ["LiveGallery", "record_of", "spec_of"]


@dataclass
class LiveGallery:
    spec: GallerySpec
    created_at: float
    index: LiveIndex  # shares `lock`, which it takes to swap in a rebuilt index
    calibration: GalleryCalibration
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    # Store generation of the snapshot on disk; -1 when there is none.
    snapshot_generation: int = -1
    # index.builds when that snapshot was taken: a background rebuild since makes it stale.
    snapshot_builds: int = 0


def spec_of(record: store.GalleryRecord) -> GallerySpec:
    return GallerySpec(
        gallery_id=record.gallery_id,
        purpose=GalleryPurpose(record.purpose),
        model_name=record.model_name,
        dimension=record.dimension,
        metric=Metric(record.metric),
        threshold=record.threshold,
        target_fpir=record.target_fpir,
        protection_version=record.protection_version,
    )


def record_of(spec: GallerySpec, created_at: float) -> store.GalleryRecord:
    return store.GalleryRecord(
        gallery_id=spec.gallery_id,
        purpose=spec.purpose.value,
        model_name=spec.model_name,
        dimension=spec.dimension,
        metric=spec.metric.value,
        threshold=spec.threshold,
        created_at=created_at,
        target_fpir=spec.target_fpir,
        protection_version=spec.protection_version,
    )
