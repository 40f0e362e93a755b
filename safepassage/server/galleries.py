"""GalleryService: create, list, describe, calibrate and delete galleries; renew template protection.

A gallery may keep reference images for human review (opt-in at creation, watchlists only): the
choice and the images live in their own store (safepassage/store/reference_images.py), erased with
the gallery.
"""

from __future__ import annotations

import logging

import grpc

from safepassage import face as faces
from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.core.errors import InvalidInput
from safepassage.matcher import GalleryInfo, GalleryPurpose, GallerySpec, Matcher
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
    def __init__(
        self,
        matcher: Matcher,
        probes: ProbeReader,
        *,
        protect_all: bool = False,
        reference_images: store.ReferenceImageStore,
    ) -> None:
        self._matcher = matcher
        self._probes = probes
        self._protect_all = protect_all
        self._images = reference_images

    def _shown(self, info: GalleryInfo) -> pb.Gallery:
        gallery = gallery_to_pb(info, self._thresholds)
        gallery.keep_reference_images = self._images.keeps(info.spec.gallery_id)
        return gallery

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
        if request.keep_reference_images and purpose is not GalleryPurpose.WATCHLIST:
            # Protected records are reached only through their consent flows: no face image beside them.
            raise InvalidInput("keep_reference_images is for watchlists only")
        created = self._matcher.create_gallery(spec, protect=protect)
        if request.keep_reference_images:
            self._images.keep_for(spec.gallery_id)
        return self._shown(created)

    def ListGalleries(
        self, request: pb.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> pb.ListGalleriesResponse:
        return pb.ListGalleriesResponse(galleries=[self._shown(g) for g in self._matcher.list_galleries()])

    def DescribeGallery(
        self, request: pb.DescribeGalleryRequest, context: grpc.ServicerContext
    ) -> pb.Gallery:
        return self._shown(self._matcher.describe(require(request.gallery_id, "gallery_id")))

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
                try:
                    found = self._probes.read(
                        probe, spec, faces.FaceSelection.LARGEST, f"impostors[{position}]"
                    )
                except (faces.NoFaceFound, faces.ImageDecodeError, faces.ImageTooSmall) as error:
                    # Name the item, so a caller (the console) can report and leave out that one photo.
                    raise InvalidInput(f"impostors[{position}]: {error}") from None
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
        gallery_id = require(request.gallery_id, "gallery_id")
        erased = self._matcher.delete_gallery(gallery_id)
        # After the templates (a stop between the two is finished at the next start: stores_opening.py).
        self._images.erase_gallery(gallery_id)
        return pb.DeleteGalleryResponse(templates_erased=erased)
