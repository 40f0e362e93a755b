"""GalleryService: create, list, describe and delete galleries."""

from __future__ import annotations

import logging

import grpc

from matcher import GallerySpec, Matcher
from safepassage_api.v1 import matching_pb2 as pb
from safepassage_api.v1 import matching_pb2_grpc as pb_grpc
from safepassage_core.errors import InvalidInput
from safepassage_server.conversion import gallery_to_pb, purpose_from_pb, require
from safepassage_server.probes import ProbeReader

log = logging.getLogger(__name__)


class GalleryServicer(pb_grpc.GalleryServiceServicer):
    def __init__(self, matcher: Matcher, probes: ProbeReader) -> None:
        self._matcher = matcher
        self._probes = probes

    def CreateGallery(self, request: pb.CreateGalleryRequest, context: grpc.ServicerContext) -> pb.Gallery:
        model = self._probes.model
        if request.model and request.model != model.name:
            raise InvalidInput(f"model {request.model!r} is not served here; this server uses {model.name}")
        spec = GallerySpec(
            gallery_id=require(request.gallery_id, "gallery_id"),
            purpose=purpose_from_pb(request.purpose),
            model_name=model.name,
            dimension=model.dimension,
            metric=model.metric,
            threshold=request.threshold if request.HasField("threshold") else model.default_threshold,
        )
        return gallery_to_pb(self._matcher.create_gallery(spec))

    def ListGalleries(
        self, request: pb.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> pb.ListGalleriesResponse:
        return pb.ListGalleriesResponse(galleries=[gallery_to_pb(g) for g in self._matcher.list_galleries()])

    def DescribeGallery(
        self, request: pb.DescribeGalleryRequest, context: grpc.ServicerContext
    ) -> pb.Gallery:
        return gallery_to_pb(self._matcher.describe(require(request.gallery_id, "gallery_id")))

    def DeleteGallery(
        self, request: pb.DeleteGalleryRequest, context: grpc.ServicerContext
    ) -> pb.DeleteGalleryResponse:
        erased = self._matcher.delete_gallery(require(request.gallery_id, "gallery_id"))
        return pb.DeleteGalleryResponse(templates_erased=erased)
