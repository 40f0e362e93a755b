"""Protobuf <-> domain values. Protobuf types stop here: nothing below sees them."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from safepassage import face as faces
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.core.errors import InvalidInput
from safepassage.matcher import (
    GalleryInfo,
    GalleryPurpose,
    Identification,
    Metric,
    ThresholdOrigin,
    ThresholdSource,
)
from safepassage.matcher.thresholds import ModelThresholds

_PURPOSES = {
    pb.WATCHLIST: GalleryPurpose.WATCHLIST,
    pb.PROTECTED_IDENTITY: GalleryPurpose.PROTECTED_IDENTITY,
}
_METRICS = {Metric.L2: pb.L2, Metric.COSINE: pb.COSINE}
_THRESHOLD_SOURCES = {
    ThresholdSource.GALLERY: pb.GALLERY_THRESHOLD,
    ThresholdSource.REQUEST: pb.REQUEST_THRESHOLD,
    ThresholdSource.TARGET_FPIR: pb.TARGET_FPIR,
}
_THRESHOLD_ORIGINS = {
    ThresholdOrigin.MODEL_DEFAULT: pb.MODEL_DEFAULT,
    ThresholdOrigin.WATCHLIST_DEFAULT: pb.WATCHLIST_DEFAULT,
    ThresholdOrigin.CALIBRATED: pb.CALIBRATED,
    ThresholdOrigin.SET_BY_ADMIN: pb.SET_BY_ADMIN,
}
_SELECTIONS = {
    pb.SINGLE: faces.FaceSelection.SINGLE,
    pb.LARGEST: faces.FaceSelection.LARGEST,
    pb.ALL: faces.FaceSelection.ALL,
}


class MissingField(InvalidInput):
    """A required request field is empty."""


def require(value: str, name: str) -> str:
    if not value:
        raise MissingField(f"{name} is required")
    return value


def purpose_from_pb(value: pb.GalleryPurpose.ValueType) -> GalleryPurpose:
    try:
        return _PURPOSES[value]
    except KeyError:
        raise InvalidInput("purpose must be WATCHLIST or PROTECTED_IDENTITY") from None


def purpose_to_pb(purpose: GalleryPurpose) -> pb.GalleryPurpose.ValueType:
    return next(k for k, v in _PURPOSES.items() if v is purpose)


def metric_to_pb(metric: Metric) -> pb.Metric.ValueType:
    return _METRICS[metric]


def selection_from_pb(value: pb.FaceSelection.ValueType, default: faces.FaceSelection) -> faces.FaceSelection:
    if value == pb.FACE_SELECTION_UNSPECIFIED:
        return default
    try:
        return _SELECTIONS[value]
    except KeyError:
        raise InvalidInput(f"face_selection {value} is not a known value") from None


def threshold_source_to_pb(source: ThresholdSource) -> pb.ThresholdSource.ValueType:
    return _THRESHOLD_SOURCES[source]


def threshold_origin_to_pb(origin: ThresholdOrigin) -> pb.ThresholdOrigin.ValueType:
    return _THRESHOLD_ORIGINS[origin]


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def gallery_to_pb(info: GalleryInfo, thresholds: ModelThresholds) -> pb.Gallery:
    """The gallery, with where its threshold came from and the FPIR it implies where known."""
    spec = info.spec
    gallery = pb.Gallery(
        gallery_id=spec.gallery_id,
        purpose=purpose_to_pb(spec.purpose),
        model=spec.model_name,
        dimension=spec.dimension,
        metric=metric_to_pb(spec.metric),
        threshold=spec.threshold,
        size=info.size,
        created_at=_timestamp(info.created_at),
        index_kind=info.index_kind,
        index_recall=info.index_recall,
        target_fpir=spec.target_fpir,
        protection_version=spec.protection_version or 0,
        quarantined_templates=info.quarantined,
        index_build_failures=info.index_build_failures,
        threshold_origin=threshold_origin_to_pb(thresholds.origin(spec)),
        background_cohort=info.background_cohort,
    )
    calibrated = info.calibration.fpir if info.calibration is not None else None
    estimated = thresholds.estimated_fpir(spec, info.size)
    if calibrated is not None:
        gallery.implied_fpir, gallery.implied_fpir_basis = calibrated, "calibration"
    elif estimated is not None:
        gallery.implied_fpir, gallery.implied_fpir_basis = estimated, "model evidence"
    if info.calibration is not None:
        gallery.calibration.CopyFrom(
            pb.Calibration(
                impostor_searches=info.calibration.impostor_searches,
                gallery_size=info.calibration.gallery_size,
                method=info.calibration.method,
                calibrated_at=_timestamp(info.calibration.calibrated_at),
            )
        )
    return gallery


def box_to_pb(box: faces.FaceBox) -> pb.FaceBox:
    return pb.FaceBox(left=box.left, top=box.top, right=box.right, bottom=box.bottom)


def face_result_to_pb(result: Identification, box: faces.FaceBox | None) -> pb.FaceResult:
    return pb.FaceResult(
        box=box_to_pb(box) if box is not None else None,
        decision=pb.MATCH if result.match else pb.NO_MATCH,
        candidates=[
            pb.Candidate(
                reference_id=c.reference_id,
                score=c.score,
                rank=c.rank,
                match=c.match,
                normalised_score=c.normalised_score,
            )
            for c in result.candidates
        ],
    )
