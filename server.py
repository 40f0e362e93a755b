"""SafePassage server: the composition root.

Configuration -> keys, store, matcher, face embedder -> servicers -> a gRPC
server with TLS, the standard health service and server reflection.
`create_server(config)` builds and binds without starting (tests use it with
port 0); `serve(config)` runs until SIGINT/SIGTERM and shuts down gracefully:
no new calls, in-flight calls finish within the grace period, index
snapshots are written, the store is closed.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import enrolment
import faces
import holder_credential
import store
from audit_log import LogEvent, TransparencyLog, load_or_create_signing_key
from matcher import (
    BatchSettings,
    Matcher,
    SearchLimits,
    TransformKeyring,
    set_blas_threshold,
    set_search_threads,
)
from safepassage_api.v1 import (
    matching_pb2,
    matching_pb2_grpc,
    protected_identity_pb2,
    protected_identity_pb2_grpc,
)
from safepassage_core.errors import FailedPrecondition
from safepassage_server.access import AccessInterceptor
from safepassage_server.audit import AuditRecorder
from safepassage_server.cctv_authorisation import AuthorisationVerifier
from safepassage_server.config import Config
from safepassage_server.errors import ErrorMappingInterceptor
from safepassage_server.fishing import FishingDetector
from safepassage_server.galleries import GalleryServicer
from safepassage_server.identity import Caller, Role
from safepassage_server.key_layout import check_key_layout
from safepassage_server.keys import derive_key, load_or_create_key
from safepassage_server.limits import RateLimiter
from safepassage_server.live_capture import LiveCaptureReader
from safepassage_server.matching import MatchingServicer
from safepassage_server.peer import PeerAuthenticator
from safepassage_server.peer import server_credentials as mtls_credentials
from safepassage_server.pki import Pki
from safepassage_server.probes import ProbeReader
from safepassage_server.protected_identity import ProtectedIdentityServicer

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from matcher.milvus_connection import MilvusConnection

log = logging.getLogger("safepassage.server")
# The development PKI's first client, so the CLI works on a fresh machine.
DEV_ADMIN = "dev-admin"

SERVICE_NAMES = (
    matching_pb2.DESCRIPTOR.services_by_name["GalleryService"].full_name,
    matching_pb2.DESCRIPTOR.services_by_name["MatchingService"].full_name,
    protected_identity_pb2.DESCRIPTOR.services_by_name["ProtectedIdentityService"].full_name,
)


@dataclass
class Service:
    """A built server and what it owns; stop() releases everything in order."""

    grpc_server: grpc.Server
    port: int
    matcher: Matcher
    template_store: store.TemplateStore
    kept_probes: store.ProbeStore
    stream_replies: store.ReplyLedger
    records: enrolment.ProtectedRecords
    transparency_log: TransparencyLog
    health: health.HealthServicer
    config: Config
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        jobs: list[tuple[str, float, Callable[[], object]]] = [
            ("retention purge", self.config.retention.purge_interval_s, self.purge_probes),
            ("reply purge", self.config.retention.purge_interval_s, self.purge_replies),
            ("tree head", self.config.audit.tree_head_interval_s, self.transparency_log.sign_tree_head),
        ]
        if self.config.storage.snapshot_interval_s > 0:
            jobs.append(
                ("index snapshot", self.config.storage.snapshot_interval_s, self.matcher.save_snapshots)
            )
        for name, interval, job in jobs:
            threading.Thread(target=self._every, args=(name, interval, job), name=name, daemon=True).start()
        log.info("SafePassage serving on port %d", self.port)

    def purge_probes(self) -> int:
        """Erase CCTV probes older than the retention that no officer confirmed."""
        erased = self.kept_probes.purge(self.config.retention.camera_probe_hours * 3600)
        return self._record_purge("probes_erased", erased)

    def purge_replies(self) -> int:
        """Erase identify-stream answers older than their retention; a later replay is searched afresh."""
        erased = self.stream_replies.purge(self.config.retention.stream_replies_hours * 3600)
        return self._record_purge("stream_replies_erased", erased)

    def _record_purge(self, what: str, erased: int) -> int:
        if erased:
            self.transparency_log.append(
                LogEvent.now("system", "retention.purge", outcome="OK", details={what: str(erased)})
            )
        return erased

    def _every(self, name: str, interval_s: float, job: Callable[[], object]) -> None:
        while not self._stopped.wait(interval_s):
            try:
                job()
            except Exception:  # a failed background job must not stop the service
                log.exception("background job %s failed", name)

    def stop(self, grace_s: float = 10.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace_s).wait()
        self.matcher.close()
        written = self.matcher.save_snapshots()
        self.transparency_log.sign_tree_head()
        self.transparency_log.close()
        self.stream_replies.close()
        self.records.vault.close()
        self.kept_probes.close()
        self.template_store.close()
        log.info("SafePassage stopped; %d index snapshots written", written)

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _milvus(config: Config) -> MilvusConnection | None:
    """The Milvus connection of the milvus backend; None for FAISS in this process."""
    if config.matching.backend != "milvus":
        return None
    try:
        from matcher.milvus_connection import MilvusConnection, MilvusSettings, MilvusTls
    except ImportError as error:
        raise FailedPrecondition(
            f"matching.backend is milvus but pymilvus is not installed ({error}); install the milvus extra"
        ) from None
    settings = config.matching.milvus
    tls = None
    if settings.tls_server_pem or settings.tls_ca_pem:
        tls = MilvusTls(
            server_pem_path=str(settings.tls_server_pem or ""),
            server_name=settings.tls_server_name,
            ca_pem_path=str(settings.tls_ca_pem or ""),
            client_pem_path=str(settings.tls_client_pem or ""),
            client_key_path=str(settings.tls_client_key or ""),
        )
    token = settings.token_file.read_text().strip() if settings.token_file else ""
    return MilvusConnection(
        MilvusSettings(
            uri=config.milvus_uri,
            token=token,
            db_name=settings.db_name,
            index_type=settings.index_type,
            index_params=settings.index_params,
            search_params=settings.search_params,
            timeout_s=settings.timeout_s,
            tls=tls,
        )
    )


def _transform_keyring(config: Config) -> TransformKeyring | None:
    """The deployment's template-protection keys; None when absent and not to be made."""
    path = config.transform_keyring_path
    if config.matching.template_protection.generate_key:
        return TransformKeyring.create_if_missing(path)
    return TransformKeyring.open(path) if path.exists() else None


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


def _protected_records(config: Config, matcher: Matcher, lookup_key: bytes) -> enrolment.ProtectedRecords:
    """The record vault, its keyring and the station's, issuer's and reader's keys (made on first run)."""
    settings = config.enrolment
    keys = enrolment.FileKeyring.open(config.keyring_path, create=config.storage.generate_template_key)
    vault = enrolment.RecordVault.open(config.records_path)
    try:
        records = enrolment.ProtectedRecords(
            vault=vault,
            keys=keys,
            matcher=matcher,
            station=enrolment.StationKey.load_or_create(config.station_key_path, settings.station_id),
            issuer=holder_credential.IssuerKey.load_or_create(config.issuer_key_path, settings.issuer_id),
            reader=holder_credential.ReaderKey.load_or_create(config.reader_key_path),
            agency_readers=[
                holder_credential.ReaderPublicKey.load(path) for path in settings.agency_reader_keys
            ],
            lookup_key=lookup_key,
            settings=enrolment.EnrolmentSettings(
                credential_valid_days=settings.credential_valid_days,
                pin_max_failures=settings.pin_max_failures,
                pin_lock_s=settings.pin_lock_s,
                referral_readers={k: frozenset(v) for k, v in settings.referral_readers.items()},
            ),
        )
        # Before serving: finish erasures a stop interrupted, move protected templates an earlier
        # version kept in the template store out of it, and hold them in memory only.
        enrolment.complete_pending(records)
        records.purge_store_copies()
        loaded = records.load_templates()
        log.info("protected records: %d records' templates loaded from the vault", loaded)
        return records
    except BaseException:
        vault.close()
        raise


def _security(
    config: Config,
) -> tuple[grpc.ServerCredentials | None, Callable[[grpc.ServicerContext], Caller], AuthorisationVerifier]:
    """Mutual TLS against the deployment's PKI (made on first run in development)."""
    if not config.tls.enabled:
        if not (config.tls.allow_plaintext_on_localhost and _is_loopback(config.listen.host)):
            raise FailedPrecondition(
                "TLS is off: plaintext is allowed only with tls.allow_plaintext_on_localhost"
                " on a loopback host"
            )
        log.warning(
            "PLAINTEXT on %s: no encryption, no client certificates; every caller acts as local %s",
            config.listen.host,
            config.tls.plaintext_role.value,
        )
        local = Caller("local", config.tls.plaintext_role, 0, "")
        return None, lambda context: local, AuthorisationVerifier(None, lambda serial: False)
    if not (config.pki_dir / "ca.pem").exists():
        if not config.tls.generate_dev_certs:
            raise FailedPrecondition(
                f"no PKI in {config.pki_dir}; run `safepassage pki init --pki-dir {config.pki_dir}`"
            )
        pki = Pki.init(config.pki_dir, config.tls.server_names, exist_ok=True)
        pki.issue_client(DEV_ADMIN, Role.ADMIN)
        log.warning("made a development PKI in %s with client %s (role admin)", config.pki_dir, DEV_ADMIN)
    authenticator = PeerAuthenticator.from_pki(config.pki_dir)
    verifier = AuthorisationVerifier(authenticator.ca, authenticator.revocations.is_revoked)
    return mtls_credentials(config.pki_dir), authenticator.caller, verifier


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_server(config: Config) -> tuple[Service, int]:
    """Build the whole service and bind its port (0 = a free one); not started yet."""
    check_key_layout(config)  # before anything is written: keys never beside the data they protect
    credentials, authenticate, cctv = _security(config)
    master_key = load_or_create_key(config.template_key_path, config.storage.generate_template_key)
    sealer = store.TemplateSealer(master_key)
    owned: list[Callable[[], object]] = []
    try:
        template_store = store.TemplateStore.open(config.database_path, sealer)
        owned.append(template_store.close)
        kept_probes = store.ProbeStore.open(config.probes_path, sealer)
        owned.append(kept_probes.close)
        stream_replies = store.ReplyLedger.open(config.stream_replies_path, sealer)
        owned.append(stream_replies.close)
        transparency_log = TransparencyLog.open(
            config.audit_log_path, load_or_create_signing_key(config.audit_key_path)
        )
        owned.append(transparency_log.close)
        embedder = _embedder(config)
        batching = config.matching.batching
        set_blas_threshold(batching.blas_min_batch * embedder.model.dimension)
        matcher = Matcher(
            template_store,
            config.snapshot_dir,
            derive_key(master_key, "index-snapshot"),
            SearchLimits(
                max_top_k=config.matching.max_top_k,
                max_restrict_to=config.matching.max_restrict_to,
                max_batch=config.matching.max_batch,
            ),
            protection=_transform_keyring(config),
            batching=BatchSettings(
                enabled=batching.enabled,
                max_wait_ms=batching.max_wait_ms,
                max_batch=batching.max_batch,
                workers=batching.workers,
                threads=batching.threads,
            ),
            index_policy=config.matching.index.policy(),
            milvus=_milvus(config),
        )
        owned.append(matcher.close)
        matcher.load()
        records = _protected_records(config, matcher, derive_key(master_key, "recovery-code-lookup"))
        owned.append(records.vault.close)
        probes = ProbeReader(
            embedder,
            faces.ImageLimits(
                max_bytes=config.faces.max_image_bytes, max_pixels=config.faces.max_image_pixels
            ),
        )
        recorder = AuditRecorder(transparency_log, FishingDetector(config.fishing))
        access = AccessInterceptor(
            authenticate=authenticate,
            purpose_of=lambda gallery_id: matcher.spec(gallery_id).purpose,
            cctv=cctv,
            limiter=RateLimiter(config.limits),
            recorder=recorder,
        )
        limit = config.listen.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.listen.max_workers,
                thread_name_prefix="rpc",
                initializer=set_search_threads,
                initargs=(config.matching.search_threads,),
            ),
            # The error interceptor is outermost, so errors raised by the access checks are mapped too.
            interceptors=[ErrorMappingInterceptor(), access],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
            maximum_concurrent_rpcs=config.listen.max_concurrent_rpcs,
        )
        matching_pb2_grpc.add_GalleryServiceServicer_to_server(
            GalleryServicer(matcher, probes, protect_all=config.matching.template_protection.protect_all),
            server,
        )
        matching_pb2_grpc.add_MatchingServiceServicer_to_server(
            MatchingServicer(matcher, probes, config.matching, kept_probes, stream_replies), server
        )
        protected_identity_pb2_grpc.add_ProtectedIdentityServiceServicer_to_server(
            ProtectedIdentityServicer(records, probes, LiveCaptureReader(probes)), server
        )
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{config.listen.host}:{config.listen.port}"
        port = (
            server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        )
        if port == 0:
            raise FailedPrecondition(f"cannot listen on {address}")
    except BaseException:
        for close in reversed(owned):
            close()
        raise
    service = Service(
        server,
        port,
        matcher,
        template_store,
        kept_probes,
        stream_replies,
        records,
        transparency_log,
        health_servicer,
        config,
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
