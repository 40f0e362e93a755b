"""The ABIS reference database: one gallery of the matcher, faces in, reference ids and scores out.

MOSIP's referenceIds are the gallery's reference ids; nothing else about a person reaches the
adapter. Inserts are idempotent by referenceId (a second insert is refused with reason 10, and
checked before the datashare is fetched). Identify searches with the template stored for the
request's referenceId (MOSIP inserts before it identifies), over the whole gallery or the
``gallery`` it names (every id must be inserted: 12 otherwise), and lists as duplicates the
candidates over the threshold: the gallery's own, or the one its calibration gives for the
``targetFPIR`` flag (FPIR = 10^(-targetFPIR/10)) at the gallery's present size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage import face as faces
from safepassage import store
from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.matcher import CalibrationUnavailable, GalleryInfo, GalleryPurpose, GallerySpec, Matcher
from safepassage.travel_document import FaceImage

__all__ = ["Duplicate", "ReferenceDatabase"]

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Duplicate:
    reference_id: str
    score: float  # in the model's metric (cosine similarity: higher is closer)
    rank: int


class ReferenceDatabase:
    def __init__(
        self,
        matcher: Matcher,
        template_store: store.TemplateStore,
        gallery_id: str,
        embedder: faces.Embedder,
        image_limits: faces.ImageLimits,
        *,
        threshold: float | None = None,
        default_max_results: int = 10,
    ) -> None:
        self._matcher, self._store, self.gallery_id = matcher, template_store, gallery_id
        self._embedder, self._limits = embedder, image_limits
        self._default_max_results = default_max_results
        model = embedder.model
        if gallery_id not in {g.spec.gallery_id for g in matcher.list_galleries()}:
            spec = GallerySpec(
                gallery_id,
                GalleryPurpose.PROTECTED_IDENTITY,
                model.name,
                model.dimension,
                model.metric,
                model.default_threshold if threshold is None else threshold,
            )
            matcher.create_gallery(spec)
            log.info("ABIS gallery %s created", gallery_id)

    def count(self) -> int:
        return self._matcher.count(self.gallery_id)

    def exists(self, reference_id: str) -> bool:
        return bool(self._store.templates.template_ids(self.gallery_id, [reference_id]))

    def embed(self, images: Sequence[FaceImage]) -> Vector:
        """The template of a record: the first image in which the pipeline finds a face (18 if none)."""
        unreadable = 0
        for image in images:
            try:
                pixels = faces.decode_image(image.data, self._limits)
            except faces.FacesError:
                unreadable += 1
                continue
            try:
                found = self._embedder.embed(pixels, faces.FaceSelection.LARGEST)
            except (faces.NoFaceFound, faces.ImageTooSmall):
                continue
            return np.asarray(found[0].embedding, dtype=np.float32)
        if unreadable == len(images):
            raise AbisRefusal(FailureReason.INVALID_CBEFF, "no face image of the record can be decoded")
        raise AbisRefusal(FailureReason.QUALITY_CHECK_FAILED, "no face found in the record's images")

    def calibrate(
        self, photos: Sequence[bytes], target_fpir: float, *, background_cohort: bool = False
    ) -> tuple[GalleryInfo, int]:
        """Calibrate the gallery from photos of people who are not in it, so that requests' targetFPIR
        flags have a threshold (and, with a background cohort, normalised scores: README "Several
        captures per person"). Returns the gallery and how many photos held no usable face."""
        vectors, unusable = [], 0
        for photo in photos:
            try:
                pixels = faces.decode_image(photo, self._limits)
                found = self._embedder.embed(pixels, faces.FaceSelection.LARGEST)
            except faces.FacesError:
                unusable += 1
                continue
            vectors.append(np.asarray(found[0].embedding, dtype=np.float32))
        info = self._matcher.calibrate(
            self.gallery_id, impostors=vectors, target_fpir=target_fpir, background_cohort=background_cohort
        )
        return info, unusable

    def insert(self, reference_id: str, template: Vector) -> None:
        try:
            self._matcher.insert(self.gallery_id, reference_id, template)
        except store.DuplicateReference:
            raise AbisRefusal(FailureReason.REFERENCE_ID_EXISTS, "referenceId already exists") from None

    def delete(self, reference_id: str) -> None:
        try:
            self._matcher.delete(self.gallery_id, reference_id)
        except store.ReferenceNotFound:
            raise AbisRefusal(FailureReason.REFERENCE_ID_NOT_FOUND, "referenceId not found") from None

    def template(self, reference_id: str) -> Vector:
        try:
            _, vector = self._store.templates.get(self.gallery_id, reference_id)
        except store.ReferenceNotFound:
            raise AbisRefusal(FailureReason.REFERENCE_ID_NOT_FOUND, "referenceId not found") from None
        return vector

    def identify(
        self,
        probe: Vector,
        *,
        exclude: str = "",
        gallery: Sequence[str] | None = None,
        max_results: int | None = None,
        fpir: float | None = None,
    ) -> list[Duplicate]:
        """The duplicates of ``probe`` (``exclude``: the probe's own reference id), closest first."""
        wanted = max_results or self._default_max_results
        restrict = None if gallery is None else [r for r in gallery if r != exclude]
        if restrict is not None and not restrict:
            return []
        # One more than asked: the probe's own reference is in the gallery and is dropped below.
        top_k = min(wanted + 1, self._matcher.limits.max_top_k)
        if restrict is not None:
            top_k = min(top_k, len(restrict))
        try:
            [found] = self._matcher.identify(
                self.gallery_id, probe[None, :], top_k, restrict or None, None, fpir
            )
        except store.ReferenceNotFound:
            raise AbisRefusal(FailureReason.REFERENCE_ID_NOT_FOUND, "a gallery id is not inserted") from None
        except CalibrationUnavailable:
            raise AbisRefusal(
                FailureReason.INVALID_REQUEST,
                "targetFPIR needs a calibrated gallery",
            ) from None
        duplicates = [c for c in found.candidates if c.match and c.reference_id != exclude]
        return [Duplicate(c.reference_id, c.score, rank) for rank, c in enumerate(duplicates[:wanted], 1)]
