"""MatchingService: templates in, searches out. Thin: protobuf <-> matcher calls.

IdentifyStream is idempotent per (client, request_id): edge clients replay
queued queries after a reconnection or crash, and each must be answered once.
The answer is kept in the reply ledger (safepassage.store.replies) before it is sent, so
a replay gets it again, marked ``replayed``, with no second search and no
second kept CCTV probe (if the ledger cannot be written, the answer is sent
anyway and the failure logged: a done search, maybe a hit, is not thrown away).
A duplicate arriving while its first copy is being answered gets ABORTED.
Only answers are kept, never errors: a retry after the cause is fixed may
succeed. The same id with a different query (a client bug) is searched
afresh, so nobody is given another query's answer.

Each search notes, for the transparency log and the fishing detector, the
threshold it used, where that came from, and what the gallery's own
threshold would have decided (call_notes.py); which thresholds a caller may
ask for is the access policy's (authorization.py), checked before any
servicer runs. A kept CCTV hit records the camera, the authorisation that
admitted its search (id, legal basis, expiry), its candidate, score and
threshold; its review (four eyes, the queue) is kept_hits.py's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from safepassage import face as faces
from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.core.errors import InvalidInput, SafePassageError
from safepassage.matcher import Identification, Matcher, ThresholdChoice, ThresholdSource, passes
from safepassage.server.call_notes import after_logged, note_search
from safepassage.server.config import MatchingConfig
from safepassage.server.conversion import (
    box_to_pb,
    face_result_to_pb,
    metric_to_pb,
    require,
    selection_from_pb,
    threshold_origin_to_pb,
    threshold_source_to_pb,
)
from safepassage.server.errors import status_of
from safepassage.server.galleries import model_thresholds
from safepassage.server.identity import Caller, Role, current_caller
from safepassage.server.kept_hits import KeptHits, timestamp
from safepassage.server.probes import ProbeFace, ProbeReader
from safepassage.server.review_decision import check_decision

log = logging.getLogger(__name__)
DEFAULT_TOP_K = 5
# A camera's face crop of a hit: a small JPEG, never a frame (IdentifyRequest.face_crop).
MAX_CROP_SIDE = 320
_CROP_LIMITS = faces.ImageLimits(max_bytes=64 * 1024, max_pixels=MAX_CROP_SIDE * MAX_CROP_SIDE, min_side=16)
_ABORTED = grpc.StatusCode.ABORTED.value[0]


class _InFlight:
    """The (client, request id) keys being answered now, so two streams never both search one query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    def claim(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._keys.discard(key)


def _error(request_id: str, code: int, message: str) -> pb.IdentifyStreamResponse:
    return pb.IdentifyStreamResponse(request_id=request_id, error=pb.Error(code=code, message=message))


class MatchingServicer(pb_grpc.MatchingServiceServicer):
    def __init__(
        self,
        matcher: Matcher,
        probes: ProbeReader,
        limits: MatchingConfig,
        kept_probes: store.ProbeStore,
        replies: store.ReplyLedger,
        *,
        retention_s: float,
        reference_images: store.ReferenceImageStore,
    ) -> None:
        self._hits = KeptHits(matcher, kept_probes, retention_s)
        self._images = reference_images
        self._matcher = matcher
        self._probes = probes
        self._limits = limits
        self._replies = replies
        self._in_flight = _InFlight()

    def _one_face(
        self,
        probe: pb.Probe,
        gallery_id: str,
        selection: pb.FaceSelection.ValueType,
        field: str,
        *,
        crop: bool = False,
    ) -> ProbeFace:
        chosen = selection_from_pb(selection, faces.FaceSelection.SINGLE)
        if chosen is faces.FaceSelection.ALL:
            raise InvalidInput("face_selection ALL is for identification; use SINGLE or LARGEST")
        spec = self._matcher.spec(gallery_id)
        (face,) = self._probes.read(probe, spec, chosen, field, crop=crop)
        return face

    def _enrolment_face(self, request: pb.InsertTemplateRequest, gallery_id: str) -> ProbeFace:
        """The template's face; with its reference image when the gallery keeps them and this is a new
        subject (a later capture never replaces the first capture's image)."""
        crop = not request.add_capture and self._images.keeps(gallery_id)
        return self._one_face(request.template, gallery_id, request.face_selection, "template", crop=crop)

    def _keep_image(self, gallery_id: str, reference_id: str, face: ProbeFace) -> None:
        if face.crop is not None:
            self._images.put_first(gallery_id, reference_id, face.crop)

    def InsertTemplate(
        self, request: pb.InsertTemplateRequest, context: grpc.ServicerContext
    ) -> pb.InsertTemplateResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        reference_id = require(request.reference_id, "reference_id")
        face = self._enrolment_face(request, gallery_id)
        captures = 1
        if request.add_capture:
            captures = self._matcher.add_captures(gallery_id, reference_id, [face.vector]).captures
        else:
            self._matcher.insert(gallery_id, reference_id, face.vector)
            self._keep_image(gallery_id, reference_id, face)
        return pb.InsertTemplateResponse(
            reference_id=reference_id, box=box_to_pb(face.box) if face.box else None, captures=captures
        )

    def BulkInsertTemplates(
        self, request_iterator: Iterable[pb.InsertTemplateRequest], context: grpc.ServicerContext
    ) -> pb.BulkInsertResponse:
        response = pb.BulkInsertResponse()
        pending: list[tuple[int, str, np.ndarray]] = []
        faces_of: dict[int, ProbeFace] = {}  # pending items' faces, for their reference images
        pending_gallery = ""
        pending_captures = False  # what is pending: new subjects, or captures of enrolled ones

        def fail(index: int, reference_id: str, error: SafePassageError) -> None:
            response.failed += 1
            if len(response.errors) < self._limits.max_bulk_errors_reported:
                response.errors.append(
                    pb.ItemError(
                        index=index,
                        reference_id=reference_id,
                        code=status_of(error).value[0],
                        message=str(error),
                    )
                )

        def flush() -> None:
            if not pending:
                return
            outcomes: Sequence[SafePassageError | store.SubjectChange | None]
            try:
                if pending_captures:  # one index update for the batch (Matcher.add_captures_many)
                    items = [(reference_id, [vector]) for _, reference_id, vector in pending]
                    outcomes = self._matcher.add_captures_many(pending_gallery, items)
                else:
                    outcomes = self._matcher.insert_many(pending_gallery, [(r, v) for _, r, v in pending])
            except SafePassageError as error:  # the whole batch, e.g. gallery deleted meanwhile
                outcomes = [error] * len(pending)
            for (index, reference_id, _), outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, SafePassageError):
                    fail(index, reference_id, outcome)
                    continue
                response.inserted += 1
                if not pending_captures:
                    self._keep_image(pending_gallery, reference_id, faces_of[index])
            pending.clear()
            faces_of.clear()

        for index, request in enumerate(request_iterator):
            try:
                gallery_id = require(request.gallery_id, "gallery_id")
                reference_id = require(request.reference_id, "reference_id")
                face = self._enrolment_face(request, gallery_id)
            except SafePassageError as error:
                fail(index, request.reference_id, error)
                continue
            # In stream order: a capture follows the new subjects sent before it, which it may belong to.
            if (
                gallery_id != pending_gallery
                or request.add_capture != pending_captures
                or len(pending) >= self._limits.bulk_commit_size
            ):
                flush()
                pending_gallery, pending_captures = gallery_id, request.add_capture
            pending.append((index, reference_id, face.vector))
            faces_of[index] = face
        flush()
        log.info("bulk insert: %d inserted, %d failed", response.inserted, response.failed)
        return response

    def DeleteTemplate(
        self, request: pb.DeleteTemplateRequest, context: grpc.ServicerContext
    ) -> pb.DeleteTemplateResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        reference_id = require(request.reference_id, "reference_id")
        # The image first: a failure between the two leaves a template without its image, never the reverse.
        self._matcher.spec(gallery_id)  # NOT_FOUND for no gallery, before anything is erased
        self._images.erase_subject(gallery_id, reference_id)
        self._matcher.delete(gallery_id, reference_id)
        return pb.DeleteTemplateResponse()

    def GetReferenceImage(
        self, request: pb.GetReferenceImageRequest, context: grpc.ServicerContext
    ) -> pb.GetReferenceImageResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        self._matcher.spec(gallery_id)  # NOT_FOUND for no gallery; the interceptor checked its purpose
        image = self._images.get(gallery_id, require(request.reference_id, "reference_id"))
        return pb.GetReferenceImageResponse(jpeg=image.jpeg, kept_at=timestamp(image.kept_at))

    def CountTemplates(
        self, request: pb.CountTemplatesRequest, context: grpc.ServicerContext
    ) -> pb.CountTemplatesResponse:
        return pb.CountTemplatesResponse(count=self._matcher.count(require(request.gallery_id, "gallery_id")))

    def Identify(self, request: pb.IdentifyRequest, context: grpc.ServicerContext) -> pb.IdentifyResponse:
        if request.face_crop:
            raise InvalidInput("face_crop is sent only by CCTV units, on IdentifyStream")
        response, _ = self._identify(request)
        return response

    def _identify(self, request: pb.IdentifyRequest) -> tuple[pb.IdentifyResponse, list[ProbeFace]]:
        gallery_id = require(request.gallery_id, "gallery_id")
        spec = self._matcher.spec(gallery_id)
        selection = selection_from_pb(request.face_selection, faces.FaceSelection.ALL)
        top_k = request.top_k or DEFAULT_TOP_K
        restrict_to = list(request.restrict_to) or None
        threshold = request.threshold if request.HasField("threshold") else None
        target_fpir = request.target_fpir if request.HasField("target_fpir") else None
        # Checked before the image is read, so a face-less image cannot slip bad parameters through.
        used = self._matcher.check_search(gallery_id, top_k, restrict_to, threshold, target_fpir)
        found = self._probes.read(request.probe, spec, selection)
        response = pb.IdentifyResponse(
            request_id=request.request_id,
            gallery_id=gallery_id,
            metric=metric_to_pb(spec.metric),
            threshold=used.value,
            decision=pb.NO_MATCH,
            threshold_source=threshold_source_to_pb(used.source),
            target_fpir=used.target_fpir,
        )
        if used.source is ThresholdSource.GALLERY:
            origin = model_thresholds(self._probes.model).origin(spec)
            response.gallery_threshold_origin = threshold_origin_to_pb(origin)
        if not found:
            note_search(used.value, used.source.name, gallery_match=False)
            return response, found
        results = self._matcher.identify(
            gallery_id,
            [f.vector for f in found],
            top_k=top_k,
            restrict_to=restrict_to,
            threshold=threshold,
            target_fpir=target_fpir,
        )
        # The gallery may have grown between the check and the search: report what was used.
        response.threshold = results[0].threshold
        named = threshold is not None or target_fpir is not None
        own = self._matcher.check_search(gallery_id) if named else used
        _note(results, own)
        for face, result in zip(found, results, strict=True):
            response.faces.append(face_result_to_pb(result, face.box))
        if any(r.match for r in results):
            response.decision = pb.MATCH
        return response, found

    def IdentifyStream(
        self, request_iterator: Iterable[pb.IdentifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.IdentifyStreamResponse]:
        caller = current_caller()
        for request in request_iterator:
            # Each answer is complete (searched, kept in the ledger) before it is yielded, so
            # a cancelled stream never leaves a key claimed.
            yield self._answer(caller, request)

    def _answer(self, caller: Caller, request: pb.IdentifyRequest) -> pb.IdentifyStreamResponse:
        try:
            if not request.request_id:
                return self._search(caller, request)  # no id: not idempotent, searched every time
            store.check_request_id(request.request_id)
            return self._answer_once(caller, request)
        except SafePassageError as error:
            return _error(request.request_id, status_of(error).value[0], str(error))

    def _answer_once(self, caller: Caller, request: pb.IdentifyRequest) -> pb.IdentifyStreamResponse:
        """The kept answer to this query if there is one; else search, keep the answer, return it."""
        key = (caller.client_id, request.request_id)
        if not self._in_flight.claim(key):
            return _error(
                request.request_id,
                _ABORTED,
                f"request {request.request_id} is being answered on another stream; retry",
            )
        deferred = False
        try:
            query = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
            kept = self._replies.get(*key)
            if kept is not None and kept.query_sha256 == query:
                answer = pb.IdentifyStreamResponse.FromString(kept.answer)
                answer.replayed = True
                return answer
            if kept is not None:
                log.warning("client %s reused a request id for another query; searched afresh", key[0])
            answer = self._search(caller, request)  # an error raises: errors are never kept
            # Kept only once the search is logged (call_notes.after_logged); the id stays claimed
            # until then, so a copy arriving on another stream meanwhile is told to retry.
            deferred = True
            after_logged(lambda logged: self._remember(key, query, answer, logged))
            return answer
        finally:
            if not deferred:
                self._in_flight.release(key)

    def _remember(
        self, key: tuple[str, str], query: bytes, answer: pb.IdentifyStreamResponse, logged: bool
    ) -> None:
        try:
            if logged:
                self._replies.put(*key, query, answer.SerializeToString())
        except SafePassageError as error:
            # The search is done (a hit may be kept): the answer still goes out rather than
            # being lost to bookkeeping; only a replay of it would search again.
            log.error("an answer to client %s not kept: %s", key[0], error)
        finally:
            self._in_flight.release(key)

    def _search(self, caller: Caller, request: pb.IdentifyRequest) -> pb.IdentifyStreamResponse:
        _check_face_crop(caller, request.face_crop)
        result, faces = self._identify(request)
        answer = pb.IdentifyStreamResponse(request_id=request.request_id, result=result)
        if caller.role is Role.CCTV_EDGE and result.decision == pb.MATCH:
            answer.probe_id = self._hits.keep(caller, result, faces, request.face_crop)
        # A crop of a face that matched nobody is dropped with the request: never stored.
        return answer

    def ConfirmMatch(
        self, request: pb.ConfirmMatchRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmMatchResponse:
        return self._hits.confirm(request)

    def DismissMatch(
        self, request: pb.DismissMatchRequest, context: grpc.ServicerContext
    ) -> pb.DismissMatchResponse:
        return self._hits.dismiss(request)

    def ListKeptHits(
        self, request: pb.ListKeptHitsRequest, context: grpc.ServicerContext
    ) -> pb.ListKeptHitsResponse:
        return self._hits.list(request)

    def RecordDecision(
        self, request: pb.RecordDecisionRequest, context: grpc.ServicerContext
    ) -> pb.RecordDecisionResponse:
        # Only checked here: the access interceptor's log entry is the record (review_decision.py).
        self._matcher.spec(require(request.gallery_id, "gallery_id"))  # NOT_FOUND for no gallery
        check_decision(request)
        recorded_at = Timestamp()
        recorded_at.GetCurrentTime()
        return pb.RecordDecisionResponse(recorded_at=recorded_at)

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext) -> pb.VerifyResponse:
        gallery_id = require(request.gallery_id, "gallery_id")
        reference_id = require(request.reference_id, "reference_id")
        face = self._one_face(request.probe, gallery_id, request.face_selection, "probe")
        threshold = request.threshold if request.HasField("threshold") else None
        outcome = self._matcher.verify(gallery_id, reference_id, face.vector, threshold)
        # Verification's own threshold is the gallery's fixed one (no FPIR for 1:1).
        own = self._matcher.spec(gallery_id).threshold
        source = ThresholdSource.GALLERY if threshold is None else ThresholdSource.REQUEST
        note_search(
            outcome.threshold,
            source.name,
            passes(outcome.metric, own, outcome.score, outcome.normalised_score),
        )
        return pb.VerifyResponse(
            decision=pb.MATCH if outcome.match else pb.NO_MATCH,
            score=outcome.score,
            threshold=outcome.threshold,
            metric=metric_to_pb(outcome.metric),
            box=box_to_pb(face.box) if face.box else None,
            normalised_score=outcome.normalised_score,
        )


def _check_face_crop(caller: Caller, crop: bytes) -> None:
    """A face crop comes only from a camera, as a small JPEG (its header read; nothing decoded)."""
    if not crop:
        return
    if caller.role is not Role.CCTV_EDGE:
        raise InvalidInput("face_crop is sent only by CCTV units")
    header = faces.read_header(crop, _CROP_LIMITS)
    if header.format != "JPEG" or max(header.width, header.height) > MAX_CROP_SIDE:
        raise InvalidInput(f"face_crop must be a JPEG of at most {MAX_CROP_SIDE} pixels a side")


def _note(results: list[Identification], own: ThresholdChoice) -> None:
    """Note the threshold a search used and what the gallery's own threshold would have decided."""
    first = results[0]
    gallery_match = any(
        passes(first.metric, own.value, c.score, c.normalised_score) for r in results for c in r.candidates
    )
    note_search(first.threshold, first.threshold_source.name, gallery_match)
