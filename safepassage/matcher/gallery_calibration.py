"""One gallery's calibration as the matcher keeps it: impostor scores, measured, stored and read back.

The store holds the scores (safepassage.matcher.calibration explains them and how a target
FPIR becomes a threshold); `GalleryCalibration` reads them on first use and
keeps them for as long as the gallery is live, so a search under a target FPIR
costs no store read. The matcher owns one per live gallery and takes the
gallery's lock around the measurements, which search its index.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import numpy.typing as npt

from safepassage import store
from safepassage.core.errors import SafePassageError
from safepassage.matcher.calibration import (
    ImpostorScores,
    calibrate_with_probes,
    choose_sample,
    leave_one_out,
)
from safepassage.matcher.errors import CalibrationUnavailable
from safepassage.matcher.gallery import CalibrationSummary, GallerySpec
from safepassage.matcher.index_loader import LiveIndex
from safepassage.matcher.thresholds import choose_threshold

__all__ = ["GalleryCalibration"]

log = logging.getLogger(__name__)


class GalleryCalibration:
    def __init__(self, template_store: store.TemplateStore, gallery_id: str) -> None:
        self._store = template_store
        self._gallery_id = gallery_id
        # None is also the answer for an uncalibrated gallery: `_read` tells it from "not read yet".
        self._scores: ImpostorScores | None = None
        self._read = False

    def scores(self) -> ImpostorScores | None:
        """The gallery's impostor scores; None when it is not calibrated."""
        if not self._read:
            stored = self._store.galleries.calibration(self._gallery_id)
            try:
                self._scores = None if stored is None else ImpostorScores.from_bytes(stored)
            except ValueError as error:
                raise store.StoreCorrupted(
                    f"gallery {self._gallery_id!r}: its stored calibration is unreadable ({error})"
                ) from None
            self._read = True
        return self._scores

    def at_size(self, spec: GallerySpec, size: int) -> tuple[GallerySpec, CalibrationSummary | None]:
        """The spec with, under a target-FPIR policy, the threshold at `size`; and the calibration's summary.

        Both come from one reading of the scores, so a calibration replaced
        meanwhile cannot pair one's threshold with the other's summary.
        """
        calibration = self.scores()
        if spec.target_fpir is not None:
            try:
                spec = dataclasses.replace(spec, threshold=choose_threshold(spec, size, calibration).value)
            except SafePassageError as error:  # grown past what the calibration supports
                log.warning(
                    "gallery %s: threshold for its target FPIR unavailable: %s", self._gallery_id, error
                )
        if calibration is None:
            return spec, None
        summary = CalibrationSummary(
            calibration.searches,
            calibration.gallery_size,
            calibration.method.value,
            calibration.calibrated_at,
            calibration.fpir_at(spec.threshold, max(size, 1)),
        )
        return spec, summary

    # -- measuring: the caller holds the gallery's read lock -------------------------------------

    def measure_with_probes(
        self, spec: GallerySpec, index: LiveIndex, prepared: npt.NDArray[np.float32]
    ) -> ImpostorScores:
        """Scores from searches by impostor probes, already in the gallery's form."""
        size = index.size
        if size == 0:
            raise CalibrationUnavailable(
                f"gallery {self._gallery_id!r} is empty: nothing to calibrate against"
            )
        best = index.search(prepared, 1).scores[:, 0]
        return calibrate_with_probes(best, spec.metric, size)

    def measure_leave_one_out(self, index: LiveIndex, sample_size: int) -> ImpostorScores:
        """Scores from `sample_size` of the gallery's own templates, each searched among the others."""
        ids, _ = index.contents()
        return leave_one_out(index, choose_sample(ids, sample_size))

    def save(
        self, scores: ImpostorScores, target_fpir: float | None, threshold: float
    ) -> store.GalleryRecord:
        """Store the scores with the gallery's threshold policy; from now on they are the ones used."""
        record = self._store.galleries.set_calibration(
            self._gallery_id, scores.to_bytes(), target_fpir, threshold
        )
        self._scores, self._read = scores, True
        return record
