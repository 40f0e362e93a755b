"""The administrator's calls to the service: galleries (list, create, calibrate, bulk import).

Each is the person's own call over the console's loopback channel (gateway.py), decided by the
service's matrix and logged under the person. Protobuf types stop here: pages get the plain values
below. Two calls are made per file of a multi-file form so that each file gets its own line:

- calibration is one CalibrateGallery over every photo; the service names the first photo it
  cannot use (``impostors[i]: ...``), which is reported and left out, and the call is made again
  with the others (each retry embeds again the photos before the refused one; refusals are rare in
  a folder chosen as strangers' faces);
- bulk import is one BulkInsertTemplates stream, whose answer lists each failed item by position.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console.gateway import ServiceGateway
from safepassage.console.refusals import FormIncomplete, RequestRefused

__all__ = [
    "AdminGateway",
    "CalibrationReport",
    "FileOutcome",
    "FileReport",
    "GallerySummary",
    "ImportReport",
    "reference_id_of",
]

# The API's reference id: letters, digits and . _ : @ / -, 1 to 128 characters.
_REFERENCE_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
_NAMED_IMPOSTOR = re.compile(r"impostors\[(\d+)\]: (.*)", re.DOTALL)
_PURPOSES = {"watchlist": pb.WATCHLIST, "protected_identity": pb.PROTECTED_IDENTITY}


class FileOutcome(enum.StrEnum):
    FACE_FOUND = "face_found"  # calibration: the photo's face was used
    ENROLLED = "enrolled"  # import: a new reference id
    ALREADY_PRESENT = "already_present"  # import: the reference id was enrolled before
    NO_FACE = "no_face"
    REFUSED = "refused"  # the service's message says why


@dataclass(frozen=True)
class FileReport:
    file_name: str
    reference_id: str  # import only ("" for calibration)
    outcome: FileOutcome
    detail: str  # the service's message for a refusal ("" otherwise)


@dataclass(frozen=True)
class GallerySummary:
    gallery_id: str
    purpose: str  # "watchlist" or "protected_identity"
    size: int
    index_kind: str
    index_recall: float
    threshold: float
    metric: str
    origin: str  # MODEL_DEFAULT, WATCHLIST_DEFAULT, CALIBRATED, SET_BY_ADMIN
    target_fpir: float | None
    implied_fpir: float | None
    implied_fpir_basis: str
    calibration_method: str  # "" : not calibrated; "probes" or "leave_one_out"
    calibration_searches: int
    calibrated_at: str  # UTC, "" when not calibrated
    background_cohort: int


@dataclass(frozen=True)
class CalibrationReport:
    gallery: GallerySummary  # after the calibration
    files: tuple[FileReport, ...]


@dataclass(frozen=True)
class ImportReport:
    gallery_id: str
    files: tuple[FileReport, ...]

    def count(self, outcome: FileOutcome) -> int:
        return sum(1 for item in self.files if item.outcome is outcome)


def reference_id_of(file_name: str) -> str:
    """The reference id an imported file is enrolled under: its name without folder or extension."""
    return PurePosixPath(file_name.replace("\\", "/")).stem


class AdminGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._galleries = pb_grpc.GalleryServiceStub(gateway.channel)
        self._matching = pb_grpc.MatchingServiceStub(gateway.channel)

    # -- galleries --------------------------------------------------------------------------------

    def list_galleries(self, person: bytes) -> list[GallerySummary]:
        answer = self._gateway.call(self._galleries.ListGalleries, pb.ListGalleriesRequest(), person)
        return [_summary(gallery) for gallery in answer.galleries]

    def create_gallery(self, person: bytes, gallery_id: str, purpose: str) -> GallerySummary:
        if purpose not in _PURPOSES:
            raise FormIncomplete("the purpose is not one of watchlist or protected identity")
        request = pb.CreateGalleryRequest(gallery_id=gallery_id, purpose=_PURPOSES[purpose])
        return _summary(self._gateway.call(self._galleries.CreateGallery, request, person))

    def calibrate(
        self,
        person: bytes,
        gallery_id: str,
        photos: Sequence[tuple[str, bytes]],
        target_fpir: float | None,
        background_cohort: bool,
    ) -> CalibrationReport:
        """Calibrate on the photos' faces; a photo the service cannot use is reported and left out."""
        remaining = list(range(len(photos)))
        refused: dict[int, FileReport] = {}
        while True:
            if not remaining:
                raise FormIncomplete("none of the photos holds a face the service could use")
            request = pb.CalibrateGalleryRequest(
                gallery_id=gallery_id,
                impostors=[pb.Probe(image=photos[i][1]) for i in remaining],
                background_cohort=background_cohort,
            )
            if target_fpir is not None:
                request.target_fpir = target_fpir
            try:
                answer = self._gateway.call(self._galleries.CalibrateGallery, request, person)
            except RequestRefused as error:
                named = _NAMED_IMPOSTOR.fullmatch(str(error))
                if named is None or int(named[1]) >= len(remaining):
                    raise
                index = remaining.pop(int(named[1]))
                refused[index] = _failed(photos[index][0], "", named[2])
                continue
            break
        files = tuple(
            refused.get(i) or FileReport(name, "", FileOutcome.FACE_FOUND, "")
            for i, (name, _) in enumerate(photos)
        )
        return CalibrationReport(_summary(answer), files)

    def bulk_import(
        self,
        person: bytes,
        gallery_id: str,
        photos: Sequence[tuple[str, bytes]],
        progress: Callable[[int], None] = lambda sent: None,
    ) -> ImportReport:
        """Enrol each photo's largest face under its file name; one line per file.

        ``progress`` is told how many photos were handed to the stream so far (gRPC's flow control
        keeps that within a window of what the service has taken), then the total once it answered.
        """
        named = [(name, reference_id_of(name), image) for name, image in photos]
        invalid = {
            i: FileReport(name, reference, FileOutcome.REFUSED, "the file name is not a valid reference id")
            for i, (name, reference, _) in enumerate(named)
            if not _REFERENCE_ID.fullmatch(reference)
        }
        sent = [i for i in range(len(named)) if i not in invalid]

        def items() -> Iterator[pb.InsertTemplateRequest]:
            for count, i in enumerate(sent):
                progress(len(invalid) + count)
                yield pb.InsertTemplateRequest(
                    gallery_id=gallery_id,
                    reference_id=named[i][1],
                    template=pb.Probe(image=named[i][2]),
                    face_selection=pb.LARGEST,
                )

        failures: dict[int, FileReport] = {}
        if sent:
            answer = self._gateway.call(self._matching.BulkInsertTemplates, items(), person)
            for error in answer.errors:
                i = sent[error.index]
                if error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]:
                    failures[i] = FileReport(named[i][0], named[i][1], FileOutcome.ALREADY_PRESENT, "")
                else:
                    failures[i] = _failed(named[i][0], named[i][1], error.message)
            if answer.failed > len(answer.errors):
                raise RequestRefused("the service reported more failures than it listed; import fewer files")
        progress(len(named))
        files = tuple(
            invalid.get(i)
            or failures.get(i)
            or FileReport(named[i][0], named[i][1], FileOutcome.ENROLLED, "")
            for i in range(len(named))
        )
        return ImportReport(gallery_id, files)


def _failed(file_name: str, reference_id: str, message: str) -> FileReport:
    if "no face" in message:
        return FileReport(file_name, reference_id, FileOutcome.NO_FACE, "")
    return FileReport(file_name, reference_id, FileOutcome.REFUSED, message)


def _summary(gallery: pb.Gallery) -> GallerySummary:
    calibrated = gallery.HasField("calibration")
    when = ""
    if calibrated:
        moment = gallery.calibration.calibrated_at.ToDatetime(tzinfo=datetime.UTC)
        when = moment.strftime("%Y-%m-%d %H:%M UTC")
    return GallerySummary(
        gallery_id=gallery.gallery_id,
        purpose="watchlist" if gallery.purpose == pb.WATCHLIST else "protected_identity",
        size=gallery.size,
        index_kind=gallery.index_kind,
        index_recall=gallery.index_recall,
        threshold=gallery.threshold,
        metric=pb.Metric.Name(gallery.metric),
        origin=pb.ThresholdOrigin.Name(gallery.threshold_origin),
        target_fpir=gallery.target_fpir if gallery.HasField("target_fpir") else None,
        implied_fpir=gallery.implied_fpir if gallery.HasField("implied_fpir") else None,
        implied_fpir_basis=gallery.implied_fpir_basis,
        calibration_method=gallery.calibration.method if calibrated else "",
        calibration_searches=gallery.calibration.impostor_searches if calibrated else 0,
        calibrated_at=when,
        background_cohort=gallery.background_cohort,
    )
