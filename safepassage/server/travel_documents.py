"""TravelDocumentService: a live face against the photo in the traveller's ePassport chip.

Thin: protobuf <-> safepassage.travel_document (which reads DG1, DG2 and the SOD and runs passive
authentication) and the probe reader (which decodes and embeds both faces with the pipeline every
probe goes through, under the decode budget). The chip's portrait is the reference, compared at
the model's 1:1 threshold: no gallery is named, so no gallery's threshold applies and none may be
chosen.

A document whose SOD does not prove DG2 (and DG1) under a trusted CSCA is refused in the answer:
decision NO_MATCH, passive_authentication FAILED with its reason, while face_match and the score
still say what the faces showed (a swapped photo that matches the traveller is exactly what the
officer must see reported). Everything cheap is checked before any image is decoded: the data
groups are parsed and the SOD verified first.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from safepassage import face as faces
from safepassage import travel_document as documents
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.api.v1 import travel_document_pb2_grpc as tpb_grpc
from safepassage.core.errors import FailedPrecondition, InvalidInput
from safepassage.matcher.search import pairwise_score
from safepassage.matcher.vectors import as_vector
from safepassage.server.call_notes import note_search
from safepassage.server.config import Config
from safepassage.server.conversion import box_to_pb, metric_to_pb, selection_from_pb
from safepassage.server.identity import current_caller
from safepassage.server.probes import EmptyProbe, ProbeFace, ProbeReader
from safepassage.server.review_decision import check_document_decision, make_check_id

__all__ = ["TravelDocumentServicer", "travel_document_servicer"]

log = logging.getLogger(__name__)


class MissingDataGroup(InvalidInput):
    """The request carries no DG2."""


class PassiveAuthenticationRequired(FailedPrecondition):
    """The deployment requires a SOD with every document, and none was given."""


class PortraitUnusable(FailedPrecondition):
    """The chip's portrait shows no face the pipeline can find."""


class PortraitUnreadable(InvalidInput):
    """The chip's portrait image cannot be decoded."""


def travel_document_servicer(config: Config, probes: ProbeReader, check_key: bytes) -> TravelDocumentServicer:
    """The servicer with the deployment's CSCA certificates, read now (a bad folder refuses the start)."""
    settings = config.travel_documents
    trust = documents.CscaTrustStore.load(settings.csca_dir) if settings.csca_dir is not None else None
    if trust is None:
        log.info("travel documents: no CSCA folder configured (travel_documents.csca_dir); SODs are refused")
    return TravelDocumentServicer(probes, trust, check_key, settings.require_passive_authentication)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TravelDocumentServicer(tpb_grpc.TravelDocumentServiceServicer):
    def __init__(
        self,
        probes: ProbeReader,
        trust: documents.CscaTrustStore | None,
        check_key: bytes,
        require_passive_authentication: bool = False,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._probes = probes
        self._check_key = check_key
        self._trust = trust
        self._require = require_passive_authentication
        self._clock = clock

    def VerifyDocument(
        self, request: tpb.VerifyDocumentRequest, context: grpc.ServicerContext
    ) -> tpb.VerifyDocumentResponse:
        chip = request.document
        if not chip.dg2:
            raise MissingDataGroup("document.dg2 is empty: give EF.DG2 as the reader read it from the chip")
        portrait = documents.read_dg2(chip.dg2).first
        mrz = documents.read_dg1(chip.dg1) if chip.dg1 else None
        now = self._clock()
        proof = self._authenticate(chip, now)
        live = self._live(request)
        reference = self._portrait(portrait.data)
        model = self._probes.model
        score = pairwise_score(live.vector, reference.vector, model.metric)
        threshold = model.default_threshold
        face_match = model.metric.is_match(score, threshold)
        note_search(threshold, "MODEL", face_match)
        refused = proof.status == tpb.PA_FAILED
        response = tpb.VerifyDocumentResponse(
            decision=pb.MATCH if face_match and not refused else pb.NO_MATCH,
            face_match=face_match,
            score=score,
            threshold=threshold,
            metric=metric_to_pb(model.metric),
            box=box_to_pb(live.box) if live.box else None,
            passive_authentication=proof,
            face_record_format=portrait.record_format.value,
            image_format=portrait.encoding.value,
        )
        # In the log entry too: a decision names it, and only this officer, with this answer, can.
        response.check_id = make_check_id(
            self._check_key, current_caller().label, response.decision, proof.status
        )
        if mrz is not None:
            response.document_expired = mrz.expired(now.date())
        return response

    def RecordDocumentDecision(
        self, request: tpb.RecordDocumentDecisionRequest, context: grpc.ServicerContext
    ) -> pb.RecordDecisionResponse:
        # Only checked here: the access interceptor's log entry is the record (review_decision.py).
        check_document_decision(request, self._check_key, current_caller().label)
        recorded_at = Timestamp()
        recorded_at.GetCurrentTime()
        return pb.RecordDecisionResponse(recorded_at=recorded_at)

    def _authenticate(self, chip: tpb.TravelDocument, now: datetime.datetime) -> tpb.PassiveAuthentication:
        if not chip.sod:
            if self._require:
                raise PassiveAuthenticationRequired(
                    "this deployment requires passive authentication: send document.sod (EF.SOD) with DG2"
                )
            return tpb.PassiveAuthentication(
                status=tpb.PA_NOT_CHECKED,
                detail="no SOD was given: nothing proves the portrait is the issuer's",
            )
        sod = documents.read_sod(chip.sod)
        if self._trust is None:
            raise documents.TrustStoreError(
                "no CSCA certificates are configured (travel_documents.csca_dir): a SOD cannot be checked"
            )
        groups = {2: chip.dg2, **({1: chip.dg1} if chip.dg1 else {})}
        try:
            proved = documents.authenticate(sod, groups, self._trust, now)
        except documents.PassiveAuthenticationFailed as failure:
            return tpb.PassiveAuthentication(
                status=tpb.PA_FAILED,
                failure=tpb.PassiveAuthenticationFailure.Value(failure.reason.value),
                detail=failure.detail,
            )
        return tpb.PassiveAuthentication(
            status=tpb.PA_PASSED,
            detail=f"the SOD ({proved.hash_algorithm}) proves DG{', DG'.join(map(str, proved.data_groups))}",
            country=proved.country,
            data_groups=list(proved.data_groups),
        )

    def _live(self, request: tpb.VerifyDocumentRequest) -> ProbeFace:
        probe = request.probe
        kind = probe.WhichOneof("kind")
        if kind == "embedding":
            values = as_vector(
                np.asarray(probe.embedding.values, dtype=np.float32), self._probes.model.dimension
            )
            return ProbeFace(values, None)
        if kind != "image":
            raise EmptyProbe("probe is empty: give the live face as an image (or an embedding)")
        selection = selection_from_pb(request.face_selection, faces.FaceSelection.SINGLE)
        if selection is faces.FaceSelection.ALL:
            raise InvalidInput("face_selection ALL is for identification; use SINGLE or LARGEST")
        (face,) = self._probes.read_image(probe.image, selection)
        return face

    def _portrait(self, image: bytes) -> ProbeFace:
        try:
            (face,) = self._probes.read_image(image, faces.FaceSelection.LARGEST)
        except faces.NoFaceFound:
            raise PortraitUnusable("no face was found in the chip's portrait (DG2)") from None
        except faces.ImageDecodeError as error:
            raise PortraitUnreadable(f"the chip's portrait (DG2) cannot be decoded: {error}") from None
        return face
