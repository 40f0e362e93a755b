"""The running adapter (``safepassage abis serve``): everything opened from the configuration, the loop.

Its own data folder holds the template store (one gallery), the index snapshots, the job
journal, the transparency log and the keys they need; nothing is shared with a matching server
(the server's store files are locked to its process). The loop keeps one broker connection and
reconnects when it drops; a stop finishes the jobs in hand and leaves the rest unacknowledged on
the broker, which delivers them again at the next start.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from safepassage import face as faces
from safepassage import store
from safepassage.abis.adapter import AbisAdapter
from safepassage.abis.broker import BrokerLink, BrokerSettings, BrokerUnavailable, Delivery
from safepassage.abis.config import AbisConfig
from safepassage.abis.datashare import DatashareClient, PartnerKey
from safepassage.abis.errors import AbisConfigError, DatashareKeyError
from safepassage.abis.journal import JobJournal
from safepassage.abis.references import ReferenceDatabase
from safepassage.audit import TransparencyLog
from safepassage.audit.keys import load_or_create_signing_key
from safepassage.core.certificates import parse_pem
from safepassage.core.errors import SafePassageError
from safepassage.core.key_derivation import derive_key
from safepassage.core.key_files import create_key, load_key, load_private_pem
from safepassage.core.private_files import read_private
from safepassage.matcher import Matcher

__all__ = ["AbisService"]

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 300.0


def _secret(path: Path | None, what: str) -> str:
    if path is None:
        return ""
    return read_private(path, what, limit=64 * 1024, error=AbisConfigError).decode("utf-8").strip()


def _datashare(config: AbisConfig) -> DatashareClient | None:
    settings = config.datashare
    if settings.partner_key_file is None or settings.partner_certificate_file is None:
        log.warning("no partner key configured (datashare.partner_key_file): inserts are refused (7)")
        return None
    key = load_private_pem(settings.partner_key_file, "ABIS partner key", DatashareKeyError)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DatashareKeyError("datashare.partner_key_file must hold an RSA private key")
    try:
        pem = settings.partner_certificate_file.read_bytes()
    except OSError as error:
        raise DatashareKeyError(f"datashare.partner_certificate_file: {error.strerror}") from None
    certificate = parse_pem(pem, "datashare.partner_certificate_file", DatashareKeyError)
    tls = ssl.create_default_context(cafile=None if settings.ca_file is None else str(settings.ca_file))
    token = _secret(settings.token_file, "MOSIP token")
    return DatashareClient(PartnerKey(key, certificate), token, tls, settings.timeout_s)


def _embedder(config: AbisConfig) -> faces.Embedder:
    from safepassage.face.onnx_embedder import OnnxEmbedder
    from safepassage.face.pipeline import PipelineSettings

    settings = config.faces
    return OnnxEmbedder(
        PipelineSettings(settings.model_dir, embedder=settings.embedder, threads=settings.threads)
    )


class AbisService:
    """Open with :meth:`open`; :meth:`run` until :meth:`stop`; then :meth:`close`."""

    def __init__(self, config: AbisConfig, embedder: faces.Embedder | None = None) -> None:
        self.config = config
        self._opened = ExitStack()
        self._stopping = threading.Event()
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        self.connected = threading.Event()
        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            create_key(config.template_key_path, "ABIS template key", AbisConfigError)
            create_key(data / "pseudonym.key", "ABIS pseudonym key", AbisConfigError)
            master = load_key(config.template_key_path, "ABIS template key", AbisConfigError)
            template_store = self._opened.enter_context(
                store.TemplateStore.open(config.database_path, store.TemplateSealer(master))
            )
            self.matcher = Matcher(template_store, config.snapshot_dir, derive_key(master, b"index-snapshot"))
            self._opened.callback(self.matcher.close)
            self.matcher.load()
            self.references = ReferenceDatabase(
                self.matcher,
                template_store,
                config.gallery_id,
                embedder or _embedder(config),
                faces.ImageLimits(
                    max_bytes=config.faces.max_image_bytes, max_pixels=config.faces.max_image_pixels
                ),
                threshold=config.threshold,
                default_max_results=config.max_results,
            )
            self.journal = JobJournal.open(config.journal_path)
            self._opened.callback(self.journal.close)
            self.audit_log = TransparencyLog.open(
                config.audit_log_path, load_or_create_signing_key(config.audit_key_path)
            )
            self._opened.callback(self.audit_log.close)
            broker = config.broker
            self.link = BrokerLink(
                BrokerSettings(
                    broker.host,
                    broker.port,
                    broker.inbound_queue,
                    broker.outbound_queue,
                    broker.username,
                    _secret(broker.password_file, "broker password"),
                    None if broker.ca_file is None else str(broker.ca_file),
                    broker.tls,
                    broker.prefetch,
                    broker.heartbeat_ms,
                ),
                self._take,
            )
            self.adapter = AbisAdapter(
                self.references,
                _datashare(config),
                self.journal,
                self.audit_log,
                load_key(data / "pseudonym.key", "ABIS pseudonym key", AbisConfigError),
                self.link.answer,
                config.workers,
            )
        except BaseException:
            self._opened.close()
            raise

    def _take(self, delivery: Delivery) -> None:
        self.adapter.take(delivery)

    def run(self) -> None:
        """Serve until :meth:`stop`: connect, and reconnect whenever the connection drops."""
        while not self._stopping.is_set():
            try:
                self.link.connect()
            except BrokerUnavailable as error:
                log.warning("%s; retrying in %.1f s", error, self.config.broker.reconnect_s)
                self._stopping.wait(self.config.broker.reconnect_s)
                continue
            self.connected.set()
            while not self._stopping.is_set() and not self.link.disconnected.wait(0.2):
                self._housekeeping()
            self.connected.clear()
            if not self._stopping.is_set():
                log.warning("broker connection lost; reconnecting")
                self.link.close()

    def _housekeeping(self) -> None:
        """Every few minutes: snapshot the index (a restart loads, not rebuilds, it); purge the journal."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_S
        try:
            self.matcher.save_snapshots()
            self.journal.purge(self.config.journal_retention_days * 86400)
        except SafePassageError as error:  # the next round tries again; serving goes on
            log.warning("ABIS housekeeping failed: %s", error)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Finish the jobs in hand (they answer through the link), then disconnect and close the files."""
        self._stopping.set()
        self.adapter.close()
        self.link.close()
        self.matcher.save_snapshots()
        self._opened.close()
