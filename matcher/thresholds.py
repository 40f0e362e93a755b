"""Which threshold a search uses: the caller's, a target FPIR's, or the gallery's.

A target false positive identification rate becomes a threshold through the
gallery's calibration (matcher.calibration) at the gallery's size at the
moment of the search, so a watchlist that doubles keeps its FPIR rather than
its threshold. A request names a threshold or a target FPIR, never both; a
gallery whose policy is a target FPIR (set by CalibrateGallery) uses it when
the request names neither.
"""

from __future__ import annotations

import math

from matcher.calibration import ImpostorScores
from matcher.errors import CalibrationUnavailable, InvalidSearch
from matcher.gallery import GallerySpec, ThresholdChoice, ThresholdSource, check_threshold


def check_target_fpir(target_fpir: float) -> float:
    if not math.isfinite(target_fpir) or not 0.0 < target_fpir < 1.0:
        raise InvalidSearch(f"target_fpir must be a rate in (0, 1), got {target_fpir:g}")
    return target_fpir


def choose_threshold(
    spec: GallerySpec,
    gallery_size: int,
    calibration: ImpostorScores | None,
    threshold: float | None = None,
    target_fpir: float | None = None,
) -> ThresholdChoice:
    """The threshold for one search of a gallery of `gallery_size` templates.

    Raises InvalidSearch for a bad or doubly given threshold, and
    CalibrationUnavailable when a target FPIR cannot be turned into one.
    """
    if threshold is not None and target_fpir is not None:
        raise InvalidSearch("give a threshold or a target_fpir, not both")
    if threshold is not None:
        return ThresholdChoice(check_threshold(threshold, spec.metric), ThresholdSource.REQUEST)
    target = target_fpir if target_fpir is not None else spec.target_fpir
    if target is None:
        return ThresholdChoice(spec.threshold, ThresholdSource.GALLERY)
    check_target_fpir(target)
    if calibration is None:
        raise CalibrationUnavailable(
            f"gallery {spec.gallery_id!r} is not calibrated: CalibrateGallery must run before"
            " a target FPIR can be used"
        )
    value = calibration.threshold_for(target, max(gallery_size, 1))
    return ThresholdChoice(check_threshold(value, spec.metric), ThresholdSource.TARGET_FPIR, target)
