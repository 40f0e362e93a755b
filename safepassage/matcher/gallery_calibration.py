"""One gallery's calibration as the matcher keeps it: impostor scores, measured, stored and read back.

The store holds the scores (safepassage.matcher.calibration explains them and how a target
FPIR becomes a threshold) and, when the calibration kept one, the background cohort whose scale
normalises every search's scores (safepassage.store.cohort, safepassage.matcher.fusion);
`GalleryCalibration` reads them on first use and keeps them for as long as the gallery is live,
so a search costs no store read. The matcher owns one per live gallery and takes the gallery's
lock around the measurements, which search its index.
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
from safepassage.matcher.errors import CalibrationUnavailable, InvalidSearch
from safepassage.matcher.fusion import background_cohort_scale, cohort_normalise
from safepassage.matcher.gallery import CalibrationSummary, GallerySpec
from safepassage.matcher.index_loader import LiveIndex
from safepassage.matcher.metric import Metric
from safepassage.matcher.thresholds import choose_threshold

__all__ = ["COHORT_NEIGHBOURS", "GalleryCalibration", "check_cohort_request", "split_cohort"]

# A probe's scale is its mean distance to this many nearest cohort faces (the measured setting:
# benchmarks/fusion_comparison.py).
COHORT_NEIGHBOURS = 10
# Fewer faces than this make a scale of few neighbours' noise; more than this cost every search.
MIN_COHORT, MAX_COHORT = 20, 1000


def check_cohort_request(spec: GallerySpec, impostors: bool, target_fpir: float | None) -> None:
    """A background cohort needs impostor probes to keep, a target FPIR (the threshold is then a
    ratio no fixed default means anything for) and distances (an L2 gallery: the ratio's order)."""
    if not impostors:
        raise InvalidSearch("a background cohort is kept from impostor probes, not leave-one-out")
    if target_fpir is None:
        raise InvalidSearch("a background cohort needs a target FPIR: its threshold is a normalised score")
    if spec.metric is not Metric.L2:
        raise InvalidSearch(
            f"a background cohort needs an L2 gallery; {spec.gallery_id!r} is {spec.metric.value}"
        )


def split_cohort(
    prepared: npt.NDArray[np.float32], seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(cohort, calibration probes): a seeded half of the impostors each (the cohort at most
    MAX_COHORT), so no impostor calibrates against a cohort that holds its own face."""
    if len(prepared) < 2 * MIN_COHORT:
        raise InvalidSearch(
            f"a background cohort needs at least {2 * MIN_COHORT} impostor faces"
            f" (half kept, half to calibrate); {len(prepared)} given"
        )
    order = np.random.default_rng(seed).permutation(len(prepared))
    keep = min(len(prepared) // 2, MAX_COHORT)
    return prepared[order[:keep]], prepared[order[keep:]]


log = logging.getLogger(__name__)


class GalleryCalibration:
    def __init__(self, template_store: store.TemplateStore, gallery_id: str, dimension: int) -> None:
        self._store = template_store
        self._gallery_id = gallery_id
        self._dimension = dimension
        # None is also the answer for an uncalibrated gallery: `_read` tells it from "not read yet".
        self._scores: ImpostorScores | None = None
        self._cohort: npt.NDArray[np.float32] | None = None
        self._read = False

    def _load(self) -> None:
        stored = self._store.galleries.calibration(self._gallery_id)
        try:
            self._scores = None if stored is None else ImpostorScores.from_bytes(stored[0])
        except ValueError as error:
            raise store.StoreCorrupted(
                f"gallery {self._gallery_id!r}: its stored calibration is unreadable ({error})"
            ) from None
        blob = None if stored is None else stored[1]
        self._cohort = (
            None
            if blob is None
            else store.open_cohort(self._store.sealer, self._gallery_id, blob, self._dimension)
        )
        self._read = True

    def forget(self) -> None:
        """Read the calibration again at next use (after a re-keying rewrote its cohort)."""
        self._read = False

    def scores(self) -> ImpostorScores | None:
        """The gallery's impostor scores; None when it is not calibrated."""
        if not self._read:
            self._load()
        return self._scores

    def cohort(self) -> npt.NDArray[np.float32] | None:
        """The background cohort, as the gallery holds templates; None: scores are not normalised."""
        if not self._read:
            self._load()
        return self._cohort

    def normalised(
        self,
        spec: GallerySpec,
        prepared: npt.NDArray[np.float32],
        scores: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64] | None:
        """Each probe's scores over its background-cohort scale; None without a cohort."""
        cohort = self.cohort()
        if cohort is None:
            return None
        scale = background_cohort_scale(prepared, cohort, spec.metric, COHORT_NEIGHBOURS)
        return np.asarray(cohort_normalise(scores, scale, spec.metric), dtype=np.float64)

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
        self,
        spec: GallerySpec,
        index: LiveIndex,
        prepared: npt.NDArray[np.float32],
        cohort: npt.NDArray[np.float32] | None = None,
    ) -> ImpostorScores:
        """Scores from searches by impostor probes, already in the gallery's form; with ``cohort``,
        normalised by it (a ratio, lower is closer), as searches will be."""
        size = index.size
        if size == 0:
            raise CalibrationUnavailable(
                f"gallery {self._gallery_id!r} is empty: nothing to calibrate against"
            )
        best = index.search(prepared, 1).scores[:, :1]
        if cohort is None:
            return calibrate_with_probes(best[:, 0], spec.metric, size)
        scale = background_cohort_scale(prepared, cohort, spec.metric, COHORT_NEIGHBOURS)
        ratios = cohort_normalise(best, scale, spec.metric)[:, 0].astype(np.float32)
        return calibrate_with_probes(ratios, Metric.L2, size)

    def measure_leave_one_out(self, index: LiveIndex, sample_size: int) -> ImpostorScores:
        """Scores from `sample_size` of the gallery's own templates, each searched among the others."""
        ids, _ = index.contents()
        return leave_one_out(index, choose_sample(ids, sample_size))

    def save(
        self,
        scores: ImpostorScores,
        target_fpir: float | None,
        threshold: float,
        cohort: npt.NDArray[np.float32] | None = None,
    ) -> store.GalleryRecord:
        """Store the scores (and the cohort they were normalised by, if any) with the gallery's
        threshold policy; from now on they are the ones used."""
        sealed = None if cohort is None else store.seal_cohort(self._store.sealer, self._gallery_id, cohort)
        record = self._store.galleries.set_calibration(
            self._gallery_id, scores.to_bytes(), target_fpir, threshold, sealed
        )
        self._scores, self._cohort, self._read = scores, cohort, True
        return record
