"""SafePassage server: the composition root.

Configuration -> keys, store, matcher, face embedder -> servicers -> a gRPC
server with TLS, the standard health service and server reflection.
`create_server(config)` builds and binds without starting (tests use it with
port 0); `serve(config)` runs until SIGINT/SIGTERM and shuts down gracefully:
no new calls, in-flight calls finish within the grace period, index
snapshots are written, the store is closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import faces
import store
from matcher import Matcher, SearchLimits, set_search_threads
from safepassage_api.v1 import matching_pb2, matching_pb2_grpc
from safepassage_core.errors import FailedPrecondition
from safepassage_server.config import Config
from safepassage_server.errors import ErrorMappingInterceptor
from safepassage_server.galleries import GalleryServicer
from safepassage_server.keys import derive_key, load_or_create_key
from safepassage_server.matching import MatchingServicer
from safepassage_server.probes import ProbeReader
from safepassage_server.tls import server_credentials, tls_files

log = logging.getLogger("safepassage.server")

SERVICE_NAMES = (
    matching_pb2.DESCRIPTOR.services_by_name["GalleryService"].full_name,
    matching_pb2.DESCRIPTOR.services_by_name["MatchingService"].full_name,
)


@dataclass
class Service:
    """A built server and what it owns; stop() releases everything in order."""

    grpc_server: grpc.Server
    port: int
    matcher: Matcher
    template_store: store.TemplateStore
    health: health.HealthServicer
    snapshot_interval_s: float
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.snapshot_interval_s > 0:
            threading.Thread(target=self._snapshot_loop, name="snapshots", daemon=True).start()
        log.info("SafePassage serving on port %d", self.port)

    def _snapshot_loop(self) -> None:
        while not self._stopped.wait(self.snapshot_interval_s):
            try:
                self.matcher.save_snapshots()
            except Exception:  # a failed snapshot must not stop the service
                log.exception("periodic index snapshot failed")

    def stop(self, grace_s: float = 10.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace_s).wait()
        written = self.matcher.save_snapshots()
        self.template_store.close()
        log.info("SafePassage stopped; %d index snapshots written", written)

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _embedder(config: Config) -> faces.Embedder:
    settings = config.faces
    if settings.backend == "dlib":
        return faces.DlibEmbedder(detect_max_side=settings.detection_max_side)
    if settings.backend == "onnx":
        from camera_edge.pipeline import PipelineSettings
        from faces.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(
            PipelineSettings(
                model_dir=settings.model_dir,
                embedder=settings.embedder,
                detect_max_side=settings.onnx_detect_max_side,
                score_threshold=settings.detector_score_threshold,
                min_face=settings.min_face,
                threads=settings.threads,
            )
        )
    raise FailedPrecondition(f"unknown face backend {settings.backend!r}")


def create_server(config: Config) -> tuple[Service, int]:
    """Build the whole service and bind its port (0 = a free one); not started yet."""
    master_key = load_or_create_key(config.template_key_path, config.storage.generate_template_key)
    template_store = store.TemplateStore.open(config.database_path, store.TemplateSealer(master_key))
    try:
        matcher = Matcher(
            template_store,
            config.snapshot_dir,
            derive_key(master_key, "index-snapshot"),
            SearchLimits(
                max_top_k=config.matching.max_top_k,
                max_restrict_to=config.matching.max_restrict_to,
                max_batch=config.matching.max_batch,
            ),
        )
        matcher.load()
        probes = ProbeReader(
            _embedder(config),
            faces.ImageLimits(
                max_bytes=config.faces.max_image_bytes, max_pixels=config.faces.max_image_pixels
            ),
        )
        limit = config.listen.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.listen.max_workers,
                thread_name_prefix="rpc",
                initializer=set_search_threads,
                initargs=(config.matching.search_threads,),
            ),
            interceptors=[ErrorMappingInterceptor()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
            maximum_concurrent_rpcs=config.listen.max_concurrent_rpcs,
        )
        matching_pb2_grpc.add_GalleryServiceServicer_to_server(GalleryServicer(matcher, probes), server)
        matching_pb2_grpc.add_MatchingServiceServicer_to_server(
            MatchingServicer(matcher, probes, config.matching), server
        )
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{config.listen.host}:{config.listen.port}"
        if config.tls.enabled:
            port = server.add_secure_port(address, server_credentials(tls_files(config)))
        else:
            log.warning("TLS is off: traffic to %s is in the clear", address)
            port = server.add_insecure_port(address)
        if port == 0:
            raise FailedPrecondition(f"cannot listen on {address}")
    except BaseException:
        template_store.close()
        raise
    service = Service(
        server, port, matcher, template_store, health_servicer, config.storage.snapshot_interval_s
    )
    return service, port


def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    service, _ = create_server(config)
    service.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stop.wait()
    service.stop(config.listen.shutdown_grace_s)
