"""SafePassage server: the composition root.

Configuration -> keys, stores, matcher, face embedder -> servicers -> a gRPC
server with TLS, the standard health service and server reflection, and when
`listen.health_port` is set a probe port answering health checks without a
client certificate (safepassage.server.health_listener); and the web console
(safepassage.console), which calls that gRPC port for the people it serves. Each part is made
elsewhere, from settings already converted (safepassage.server.settings_conversion);
this module only wires them.
`create_server(config)` builds and binds without starting (tests use it with
port 0); `serve(config)` runs until SIGINT/SIGTERM and shuts down gracefully
(safepassage.server.service), and a signal during start-up abandons it,
closing what was opened.

One server per data folder and per port: the folder is locked for the
process's lifetime (safepassage.server.data_lock) and the port is bound
without SO_REUSEPORT; either taken refuses the start, naming the holder's pid.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from contextlib import ExitStack
from types import FrameType

from safepassage import store
from safepassage.console import Console, ConsoleSettings
from safepassage.matcher import Matcher, set_blas_threshold
from safepassage.server import settings_conversion as settings
from safepassage.server.access import AccessInterceptor
from safepassage.server.audit import AuditRecorder
from safepassage.server.config import Config
from safepassage.server.console_credentials import ConsoleCredentials
from safepassage.server.data_lock import DataFolderLock
from safepassage.server.decode_budget import DecodeBudget
from safepassage.server.fishing import FishingDetector
from safepassage.server.grpc_host import add_health, bind, grpc_server, release
from safepassage.server.health_listener import open_health_listener
from safepassage.server.key_layout import check_key_layout
from safepassage.server.keys import derive_key, load_or_create_key
from safepassage.server.limits import RateLimiter
from safepassage.server.probes import ProbeReader
from safepassage.server.pseudonyms import LogPseudonyms
from safepassage.server.service import Service
from safepassage.server.servicers import Servicers, add_servicers
from safepassage.server.stores_opening import open_protected_records, open_stores
from safepassage.server.transport_security import transport_security

log = logging.getLogger("safepassage.server")


def create_server(config: Config) -> tuple[Service, int]:
    """Build the whole service and bind its port (0 = a free one); not started yet."""
    check_key_layout(config)  # before anything is written: keys never beside the data they protect
    with ExitStack() as opened:  # closed in reverse if anything below fails; the service owns them after
        # Before anything touches the folder: a second server on it would miss the first one's enrolments.
        data_lock = DataFolderLock.acquire(config.storage.data_dir)
        opened.callback(data_lock.release)
        security = transport_security(config)
        master_key = load_or_create_key(config.template_key_path, config.storage.generate_template_key)
        stores = open_stores(config, store.TemplateSealer(master_key), opened)
        embedder = settings.embedder(config)
        set_blas_threshold(config.matching.batching.blas_min_batch * embedder.model.dimension)
        matcher = Matcher(
            stores.template_store,
            config.snapshot_dir,
            derive_key(master_key, "index-snapshot"),
            settings.search_limits(config),
            protection=settings.transform_keyring(config),
            batching=settings.batch_settings(config),
            index_policy=config.matching.index.policy(),
            milvus=settings.milvus_connection(config),
        )
        opened.callback(matcher.close)
        matcher.load()
        records = open_protected_records(config, matcher, derive_key(master_key, "recovery-code-lookup"))
        opened.callback(records.vault.close)
        budget = DecodeBudget(config.faces.decode_budget_bytes, config.faces.decode_wait_s)
        probes = ProbeReader(embedder, settings.image_limits(config), budget)
        access = AccessInterceptor(
            authenticate=security.authenticate,
            galleries=matcher,
            cctv=security.cctv,
            limiter=RateLimiter(config.limits),
            recorder=AuditRecorder(stores.transparency_log, FishingDetector(config.fishing)),
            pseudonyms=LogPseudonyms.from_master_key(master_key),
        )
        server = grpc_server(config, access)
        add_servicers(
            server,
            Servicers(
                config,
                matcher,
                probes,
                embedder,
                budget,
                stores,
                records,
                security.cctv,
                derive_key(master_key, "document-check-ids"),
            ),
        )
        health_servicer = add_health(server)
        # The probe port before the main one: if either is taken, the main server (which would take
        # calls for the moment a release starts it) was never bound. What is bound is released if
        # anything after it fails, saying NOT_SERVING first.
        health_listener = open_health_listener(config, health_servicer)
        if health_listener is not None:
            opened.callback(release, health_listener.server)
        port = bind(server, config, security.credentials)
        opened.callback(release, server)
        opened.callback(health_servicer.enter_graceful_shutdown)
        console = _console(config, security.console, port)
        if console is not None:
            opened.callback(console.stop)
        opened.pop_all()
    service = Service(
        server, port, matcher, stores, records, health_servicer, config, data_lock, health_listener, console
    )
    return service, port


def _console(config: Config, credentials: ConsoleCredentials | None, grpc_port: int) -> Console | None:
    """The console, bound to its port, calling this server's gRPC port over loopback (None: off)."""
    if credentials is None:
        return None
    host = config.listen.host
    # A wildcard listen address is reached on loopback; the server's certificate names the host.
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return Console(
        ConsoleSettings(
            host=config.console.host,
            port=config.console.port,
            language=config.console.language,
            max_upload_bytes=config.console.max_upload_bytes,
            form_lifetime_s=config.console.form_hours * 3600,
            server_cert_file=credentials.server_cert_file,
            server_key_file=credentials.server_key_file,
            ca_pem=credentials.ca_pem,
            service_target=f"[{target}]:{grpc_port}" if ":" in target else f"{target}:{grpc_port}",
            service_name=credentials.server_name,
            console_cert_pem=credentials.console_cert_pem,
            console_key_pem=credentials.console_key_pem,
            max_message_bytes=config.listen.max_message_bytes,
            kiosk_idle_s=config.console.kiosk_idle_seconds,
        )
    )


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
