"""GalleryService: create, list, describe, calibrate and delete galleries; renew template protection."""

from __future__ import annotations

import logging

import grpc

from safepassage import face as faces
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.core.errors import InvalidInput
from safepassage.matcher import GallerySpec, Matcher
from safepassage.matcher.thresholds import ModelThresholds
from safepassage.server.conversion import gallery_to_pb, purpose_from_pb, require
from safepassage.server.probes import ProbeReader

log = logging.getLogger(__name__)


def model_thresholds(model: faces.EmbeddingModel) -> ModelThresholds:
    return ModelThresholds(
        one_to_one=model.default_threshold,
        watchlist=model.watchlist_threshold,
        one_to_one_fmr=model.default_threshold_fmr,
        watchlist_fmr=model.watchlist_threshold_fmr,
    )


class GalleryServicer(pb_grpc.GalleryServiceServicer):
    def __init__(self, matcher: Matcher, probes: ProbeReader, *, protect_all: bool = False) -> None:
        self._matcher = matcher
        self._probes = probes
        self._protect_all = protect_all

    @property
    def _thresholds(self) -> ModelThresholds:
        return model_thresholds(self._probes.model)

    def CreateGallery(self, request: pb.CreateGalleryRequest, context: grpc.ServicerContext) -> pb.Gallery:
        model = self._probes.model
        if request.model and request.model != model.name:
            raise InvalidInput(f"model {request.model!r} is not served here; this server uses {model.name}")
        purpose = purpose_from_pb(request.purpose)
        thresholds = model_thresholds(model)
        spec = GallerySpec(
            gallery_id=require(request.gallery_id, "gallery_id"),
            purpose=purpose,
            model_name=model.name,
            dimension=model.dimension,
            metric=model.metric,
            # A watchlist takes the model's watchlist default, never silently the 1:1 threshold.
            threshold=thresholds.for_new_gallery(
                purpose, request.threshold if request.HasField("threshold") else None
            ),
        )
        protect = request.protect_templates or self._protect_all
        return gallery_to_pb(self._matcher.create_gallery(spec, protect=protect), thresholds)

    def ListGalleries(
        self, request: pb.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> pb.ListGalleriesResponse:
        return pb.ListGalleriesResponse(
            galleries=[gallery_to_pb(g, self._thresholds) for g in self._matcher.list_galleries()]
        )

    def DescribeGallery(
        self, request: pb.DescribeGalleryRequest, context: grpc.ServicerContext
    ) -> pb.Gallery:
        return gallery_to_pb(
            self._matcher.describe(require(request.gallery_id, "gallery_id")), self._thresholds
        )

    def CalibrateGallery(
        self, request: pb.CalibrateGalleryRequest, context: grpc.ServicerContext
    ) -> pb.Gallery:
        gallery_id = require(request.gallery_id, "gallery_id")
        spec = self._matcher.spec(gallery_id)
        target = request.target_fpir if request.HasField("target_fpir") else None
        if request.impostors and request.leave_one_out:
            raise InvalidInput("give impostors or leave_one_out, not both")
        if not request.impostors and not request.leave_one_out:
            raise InvalidInput("give impostors (non-mated probes) or a leave_one_out sample size")
        impostors = None
        if request.impostors:
            vectors = []
            for position, probe in enumerate(request.impostors):
                found = self._probes.read(probe, spec, faces.FaceSelection.LARGEST, f"impostors[{position}]")
                if not found:
                    raise InvalidInput(f"impostors[{position}] holds no face")
                vectors.append(found[0].vector)
            impostors = vectors
        info = self._matcher.calibrate(
            gallery_id,
            impostors,
            leave_one_out_sample=request.leave_one_out,
            target_fpir=target,
            background_cohort=request.background_cohort,
        )
        return gallery_to_pb(info, self._thresholds)

    def RenewTemplateProtection(
        self, request: pb.RenewTemplateProtectionRequest, context: grpc.ServicerContext
    ) -> pb.RenewTemplateProtectionResponse:
        version, galleries, rewritten = self._matcher.renew_protection()
        return pb.RenewTemplateProtectionResponse(
            protection_version=version, galleries=galleries, templates_rewritten=rewritten
        )

    def DeleteGallery(
        self, request: pb.DeleteGalleryRequest, context: grpc.ServicerContext
    ) -> pb.DeleteGalleryResponse:
        erased = self._matcher.delete_gallery(require(request.gallery_id, "gallery_id"))
        return pb.DeleteGalleryResponse(templates_erased=erased)
