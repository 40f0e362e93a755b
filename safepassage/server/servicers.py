"""Every gRPC servicer of the service, registered on one server from the parts the root built.

The composition root (safepassage.app) opens the stores, the matcher and the face pipeline; this
module only hands each servicer its share of them. The access interceptor in front of them all
decides every call; nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from safepassage import enrolment
from safepassage import face as faces
from safepassage.api.v1 import (
    access_pb2_grpc,
    administration_pb2_grpc,
    capture_pb2_grpc,
    matching_pb2_grpc,
    protected_identity_pb2_grpc,
    travel_document_pb2_grpc,
)
from safepassage.matcher import Matcher
from safepassage.server import settings_conversion as settings
from safepassage.server.administration import AdministrationServicer
from safepassage.server.caller_description import AccessServicer
from safepassage.server.capture_quality import CaptureServicer
from safepassage.server.cctv_authorisation import AuthorisationVerifier
from safepassage.server.cctv_authority import load_authority
from safepassage.server.config import Config
from safepassage.server.decode_budget import DecodeBudget
from safepassage.server.galleries import GalleryServicer
from safepassage.server.live_capture import LiveCaptureReader
from safepassage.server.liveness_tokens import LivenessTokens
from safepassage.server.matching import MatchingServicer
from safepassage.server.probes import ProbeReader
from safepassage.server.protected_identity import ProtectedIdentityServicer
from safepassage.server.stores_opening import Stores
from safepassage.server.travel_documents import travel_document_servicer

__all__ = ["Servicers", "add_servicers"]


@dataclass(frozen=True)
class Servicers:
    """What the servicers are made of."""

    config: Config
    matcher: Matcher
    probes: ProbeReader
    embedder: faces.Embedder
    budget: DecodeBudget
    stores: Stores
    records: enrolment.ProtectedRecords
    cctv: AuthorisationVerifier
    # Derived from the master key: the tags of chip checks' ids (review_decision.make_check_id).
    document_check_key: bytes


def add_servicers(server: grpc.Server, parts: Servicers) -> None:
    config, matcher, probes, stores = parts.config, parts.matcher, parts.probes, parts.stores
    # The service's own head-turn challenges and statements: issued by CaptureService, spent by holder proofs.
    liveness = LivenessTokens()
    matching_pb2_grpc.add_GalleryServiceServicer_to_server(
        GalleryServicer(
            matcher,
            probes,
            protect_all=config.matching.template_protection.protect_all,
            reference_images=stores.reference_images,
        ),
        server,
    )
    matching_pb2_grpc.add_MatchingServiceServicer_to_server(
        MatchingServicer(
            matcher,
            probes,
            config.matching,
            stores.kept_probes,
            stores.stream_replies,
            retention_s=config.retention.camera_probe_hours * 3600,
            reference_images=stores.reference_images,
        ),
        server,
    )
    protected_identity_pb2_grpc.add_ProtectedIdentityServiceServicer_to_server(
        ProtectedIdentityServicer(parts.records, probes, LiveCaptureReader(probes, liveness)), server
    )
    access_pb2_grpc.add_AccessServiceServicer_to_server(AccessServicer(), server)
    administration_pb2_grpc.add_AdministrationServiceServicer_to_server(
        AdministrationServicer(
            config.pki_dir,
            stores.transparency_log,
            load_authority(config.cctv, config.pki_dir, parts.cctv),
            matcher,
        ),
        server,
    )
    capture_pb2_grpc.add_CaptureServiceServicer_to_server(
        CaptureServicer(parts.embedder, settings.image_limits(config), parts.budget, liveness), server
    )
    travel_document_pb2_grpc.add_TravelDocumentServiceServicer_to_server(
        travel_document_servicer(config, probes, parts.document_check_key), server
    )
