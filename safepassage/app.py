"""SafePassage server: the composition root.

Configuration -> keys, store, matcher, face embedder -> servicers -> a gRPC
server with TLS, the standard health service and server reflection, and when
`listen.health_port` is set a probe port answering health checks without a
client certificate (safepassage.server.health_listener).
`create_server(config)` builds and binds without starting (tests use it with
port 0); `serve(config)` runs until SIGINT/SIGTERM and shuts down gracefully:
no new calls, in-flight calls finish within the grace period, index
snapshots are written, the store is closed. Every step of the stop runs even
when one before it failed (a full disk fails the snapshots, not the closing),
and a signal during start-up abandons it, closing what was opened.

One server per data folder and per port: the folder is locked for the
process's lifetime (safepassage.server.data_lock) and the port is bound
without SO_REUSEPORT; either taken refuses the start, naming the holder's pid.
"""

from __future__ import annotations

import faulthandler
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

from safepassage import credential as holder_credential
from safepassage import enrolment, store
from safepassage import face as faces
from safepassage.api.v1 import (
    matching_pb2,
    matching_pb2_grpc,
    protected_identity_pb2,
    protected_identity_pb2_grpc,
)
from safepassage.audit import (
    HeadRecord,
    LogEvent,
    TransparencyLog,
    TreeHeadPublisher,
    WitnessClient,
    load_or_create_signing_key,
    load_public_key,
)
from safepassage.core.errors import FailedPrecondition, SafePassageError
from safepassage.matcher import (
    BatchSettings,
    Matcher,
    SearchLimits,
    TransformKeyring,
    set_blas_threshold,
    set_search_threads,
)
from safepassage.matcher.snapshot import remove_stale as remove_stale_snapshots
from safepassage.server.access import AccessInterceptor
from safepassage.server.audit import AuditRecorder
from safepassage.server.cctv_authorisation import AuthorisationVerifier
from safepassage.server.config import Config
from safepassage.server.data_lock import DataFolderLock
from safepassage.server.decode_budget import DecodeBudget
from safepassage.server.errors import ErrorMappingInterceptor
from safepassage.server.fishing import FishingDetector
from safepassage.server.galleries import GalleryServicer
from safepassage.server.health_listener import HealthListener, open_health_listener
from safepassage.server.identity import Caller, Role
from safepassage.server.key_layout import check_key_layout
from safepassage.server.keys import derive_key, load_or_create_key
from safepassage.server.limits import RateLimiter
from safepassage.server.live_capture import LiveCaptureReader
from safepassage.server.matching import MatchingServicer
from safepassage.server.peer import PeerAuthenticator
from safepassage.server.peer import server_credentials as mtls_credentials
from safepassage.server.pki import Pki
from safepassage.server.port_holder import PortInUse, port_holders
from safepassage.server.probes import ProbeReader
from safepassage.server.protected_identity import ProtectedIdentityServicer
from safepassage.server.pseudonyms import LogPseudonyms

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from safepassage.matcher.milvus_connection import MilvusConnection

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
    data_lock: DataFolderLock | None = None
    health_listener: HealthListener | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.health_listener is not None:
            self.health_listener.start()
        jobs: list[tuple[str, float, Callable[[], object]]] = [
            ("retention purge", self.config.retention.purge_interval_s, self.purge_probes),
            ("reply purge", self.config.retention.purge_interval_s, self.purge_replies),
            ("tree head", self.config.audit.tree_head_interval_s, self.transparency_log.publish_tree_head),
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
        """Stop serving, then write and close everything; each step runs even if one before failed."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace_s).wait()
        written: list[int] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            # Up through the grace period, saying NOT_SERVING, so load balancers move on first.
            *([("stop the health listener", self.health_listener.stop)] if self.health_listener else []),
            ("stop the matcher", self.matcher.close),
            ("write the index snapshots", lambda: written.append(self.matcher.save_snapshots())),
            ("publish a tree head", self.transparency_log.publish_tree_head),
            ("close the transparency log", self.transparency_log.close),
            ("close the stream replies", self.stream_replies.close),
            ("close the record vault", self.records.vault.close),
            ("close the kept probes", self.kept_probes.close),
            ("close the template store", self.template_store.close),
        ]
        if self.data_lock is not None:
            steps.append(("release the data folder", self.data_lock.release))
        failed = [name for name, step in steps if not _completed(name, step)]
        log.info(
            "SafePassage stopped; %d index snapshots written%s",
            sum(written),
            f"; could not {', '.join(failed)} (logged above)" if failed else "",
        )

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _completed(name: str, step: Callable[[], object]) -> bool:
    # The store holds every acknowledged write: a snapshot or tree head not written is redone later.
    try:
        step()
    except SafePassageError as error:  # an expected state (a full disk): its message says it all
        log.error("shutdown: could not %s: %s", name, error)
        return False
    except Exception:
        log.exception("shutdown: could not %s", name)
        return False
    return True


def _tree_head_publisher(config: Config) -> TreeHeadPublisher:
    """The head file (always) and the witness (when configured) of the transparency log."""
    settings = config.audit.witness
    witness = None
    if settings.url and settings.public_key_file is not None:
        try:
            witness_key = load_public_key(settings.public_key_file.read_bytes())
        except (OSError, ValueError) as error:
            raise FailedPrecondition(f"audit.witness.public_key_file: {error}") from None
        witness = WitnessClient(settings.url, witness_key, timeout_s=settings.timeout_s)
    return TreeHeadPublisher(HeadRecord(config.audit_head_path), witness, witness_required=settings.required)


def _milvus(config: Config) -> MilvusConnection | None:
    """The Milvus connection of the milvus backend; None for FAISS in this process."""
    if config.matching.backend != "milvus":
        return None
    try:
        from safepassage.matcher.milvus_connection import MilvusConnection, MilvusSettings, MilvusTls
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
        from safepassage.camera_edge.pipeline import PipelineSettings
        from safepassage.face.onnx_embedder import OnnxEmbedder

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
        pki = Pki.init(config.pki_dir, config.tls.server_names, exist_ok=True, development=True)
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
    # Before anything touches the folder: a second server on it would miss the first one's enrolments.
    data_lock = DataFolderLock.acquire(config.storage.data_dir)
    owned: list[Callable[[], object]] = [data_lock.release]
    try:
        credentials, authenticate, cctv = _security(config)
        master_key = load_or_create_key(config.template_key_path, config.storage.generate_template_key)
        sealer = store.TemplateSealer(master_key)
        template_store = store.TemplateStore.open(config.database_path, sealer)
        owned.append(template_store.close)
        # What a crash left: snapshots of galleries deleted since, partly written snapshot files.
        remove_stale_snapshots(
            config.snapshot_dir, {gallery.gallery_id for gallery in template_store.list_galleries()}
        )
        kept_probes = store.ProbeStore.open(config.probes_path, sealer)
        owned.append(kept_probes.close)
        stream_replies = store.ReplyLedger.open(config.stream_replies_path, sealer)
        owned.append(stream_replies.close)
        # Refused if shorter than, or inconsistent with, a tree head it published (head file, witness).
        transparency_log = TransparencyLog.open(
            config.audit_log_path,
            load_or_create_signing_key(config.audit_key_path),
            publisher=_tree_head_publisher(config),
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
            DecodeBudget(config.faces.decode_budget_bytes, config.faces.decode_wait_s),
        )
        recorder = AuditRecorder(transparency_log, FishingDetector(config.fishing))
        access = AccessInterceptor(
            authenticate=authenticate,
            galleries=matcher,
            cctv=cctv,
            limiter=RateLimiter(config.limits),
            recorder=recorder,
            pseudonyms=LogPseudonyms.from_master_key(master_key),
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
                # gRPC's default lets a second server bind the same port and take some of its calls.
                ("grpc.so_reuseport", 0),
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
        try:
            port = (
                server.add_secure_port(address, credentials)
                if credentials
                else server.add_insecure_port(address)
            )
        except RuntimeError:  # gRPC says only "Failed to bind"
            port = 0
        if port == 0:
            raise _port_refusal(address, config.listen.port)
        health_listener = open_health_listener(config, health_servicer)
        if health_listener is not None:
            owned.append(health_listener.stop)
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
        data_lock=data_lock,
        health_listener=health_listener,
    )
    return service, port


def _port_refusal(address: str, port: int) -> FailedPrecondition:
    holders = port_holders(port) if port else []
    if holders:
        named = ", ".join(str(pid) for pid in holders)
        return PortInUse(f"cannot listen on {address}: port {port} is in use by process (pid {named})")
    return PortInUse(f"cannot listen on {address}: the address is in use or not available here")


class _StopDuringStartUp(BaseException):
    """SIGINT/SIGTERM before serving: unwinds create_server, which closes what it had opened."""


def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully; returns once everything is closed."""
    # A fatal signal (SIGBUS from a failing disk, SIGSEGV in native code) leaves a traceback in the log.
    faulthandler.enable()
    stop = threading.Event()
    starting = threading.Event()
    starting.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()
        if starting.is_set():
            starting.clear()
            raise _StopDuringStartUp

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    service: Service | None = None
    try:
        service, _ = create_server(config)
        service.start()
        starting.clear()
    except _StopDuringStartUp:
        if service is not None:
            service.stop(0)
        log.info("SafePassage stopped during start-up")
        return
    # Polled: a signal the kernel hands to another thread (gRPC's) runs its Python handler only when
    # the main thread next wakes, and an untimed wait never would.
    while not stop.wait(timeout=0.5):
        pass
    service.stop(config.listen.shutdown_grace_s)
