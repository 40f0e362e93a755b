"""Which threshold a search uses: the caller's, a target FPIR's, or the gallery's.

A target false positive identification rate becomes a threshold through the
gallery's calibration (safepassage.matcher.calibration) at the gallery's size at the
moment of the search, so a watchlist that doubles keeps its FPIR rather than
its threshold. A request names a threshold or a target FPIR, never both; a
gallery whose policy is a target FPIR (set by CalibrateGallery) uses it when
the request names neither.

A gallery's own threshold has an origin (ThresholdOrigin); a new watchlist
takes its model's watchlist default, never silently the 1:1 threshold, and
until it is calibrated its FPIR is estimated from the model's measured
per-comparison false match rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from safepassage.matcher.calibration import ImpostorScores
from safepassage.matcher.errors import CalibrationUnavailable, InvalidSearch
from safepassage.matcher.gallery import (
    GalleryPurpose,
    GallerySpec,
    ThresholdChoice,
    ThresholdOrigin,
    ThresholdSource,
    check_threshold,
)


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


@dataclass(frozen=True)
class ModelThresholds:
    """A model's default thresholds and the false match rates measured at them (None: unknown)."""

    one_to_one: float
    watchlist: float | None = None
    one_to_one_fmr: float | None = None
    watchlist_fmr: float | None = None

    def for_new_gallery(self, purpose: GalleryPurpose, requested: float | None) -> float:
        """The threshold a gallery is created with: the admin's, else the purpose's default.

        Raises InvalidSearch for a watchlist of a model without a watchlist default: the 1:1
        threshold's false matches add up over a gallery, so it is never taken silently.
        """
        if requested is not None:
            return requested
        if purpose is not GalleryPurpose.WATCHLIST:
            return self.one_to_one
        if self.watchlist is None:
            raise InvalidSearch(
                "this model has no watchlist default threshold: give one (then calibrate the gallery)"
            )
        return self.watchlist

    def origin(self, spec: GallerySpec) -> ThresholdOrigin:
        """Derived from the stored spec: a value equal to a default is that default."""
        if spec.target_fpir is not None:
            return ThresholdOrigin.CALIBRATED
        watchlist = self.watchlist if spec.purpose is GalleryPurpose.WATCHLIST else None
        if watchlist is not None and math.isclose(spec.threshold, watchlist, abs_tol=1e-6):
            return ThresholdOrigin.WATCHLIST_DEFAULT
        if math.isclose(spec.threshold, self.one_to_one, abs_tol=1e-6):
            return ThresholdOrigin.MODEL_DEFAULT
        return ThresholdOrigin.SET_BY_ADMIN

    def estimated_fpir(self, spec: GallerySpec, gallery_size: int) -> float | None:
        """FPIR at a default threshold from the model's per-comparison FMR: 1 - (1 - FMR)^size.

        Treats a stranger's comparisons as independent, which real galleries are not quite;
        None for a threshold whose FMR was not measured.
        """
        origin = self.origin(spec)
        fmr = {
            ThresholdOrigin.WATCHLIST_DEFAULT: self.watchlist_fmr,
            ThresholdOrigin.MODEL_DEFAULT: self.one_to_one_fmr,
        }.get(origin)
        if fmr is None:
            return None
        return 1.0 - (1.0 - fmr) ** max(gallery_size, 1)
