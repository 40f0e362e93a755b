"""The built service: what `create_server` made, started, and stopped in order.

`Service.start` serves, says SERVING for every service on the health service, opens the probe port,
starts the periodic jobs (safepassage.server.housekeeping) and then the console, which calls the
gRPC port like any client; `Service.stop` stops the console first. `Service.stop` is the graceful
shutdown: no new calls, in-flight calls finish within the grace period, index snapshots are written,
the stores are closed and the data folder released. Every step of the stop runs even when one before
it failed (a full disk fails the snapshots, not the closing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2

from safepassage import enrolment, store
from safepassage.api.v1 import (
    access_pb2,
    administration_pb2,
    capture_pb2,
    matching_pb2,
    protected_identity_pb2,
    travel_document_pb2,
)
from safepassage.audit import TransparencyLog
from safepassage.core.errors import SafePassageError
from safepassage.matcher import Matcher
from safepassage.server.config import Config
from safepassage.server.data_lock import DataFolderLock
from safepassage.server.health_listener import HealthListener
from safepassage.server.housekeeping import Retention, periodic_jobs, start_periodic
from safepassage.server.stores_opening import Stores

__all__ = ["SERVICE_NAMES", "Service"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    administration_pb2.DESCRIPTOR.services_by_name["AdministrationService"].full_name,
    capture_pb2.DESCRIPTOR.services_by_name["CaptureService"].full_name,
    matching_pb2.DESCRIPTOR.services_by_name["GalleryService"].full_name,
    matching_pb2.DESCRIPTOR.services_by_name["MatchingService"].full_name,
    protected_identity_pb2.DESCRIPTOR.services_by_name["ProtectedIdentityService"].full_name,
    travel_document_pb2.DESCRIPTOR.services_by_name["TravelDocumentService"].full_name,
)


class FrontDoor(Protocol):
    """Another way in that calls this service as its clients (the console: safepassage/console/)."""

    port: int

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Service:
    """A built server and what it owns; stop() releases everything in order."""

    grpc_server: grpc.Server
    port: int
    matcher: Matcher
    stores: Stores
    records: enrolment.ProtectedRecords
    health: health.HealthServicer
    config: Config
    data_lock: DataFolderLock | None = None
    health_listener: HealthListener | None = None
    console: FrontDoor | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def template_store(self) -> store.TemplateStore:
        return self.stores.template_store

    @property
    def kept_probes(self) -> store.ProbeStore:
        return self.stores.kept_probes

    @property
    def stream_replies(self) -> store.ReplyLedger:
        return self.stores.stream_replies

    @property
    def transparency_log(self) -> TransparencyLog:
        return self.stores.transparency_log

    @property
    def retention(self) -> Retention:
        return Retention(self.config.retention, self.kept_probes, self.stream_replies, self.transparency_log)

    def start(self) -> None:
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.health_listener is not None:
            self.health_listener.start()
        start_periodic(
            periodic_jobs(self.config, self.retention, self.matcher, self.transparency_log), self._stopped
        )
        if self.console is not None:
            self.console.start()  # after the port it calls: it logs its URL once it answers
        log.info("SafePassage serving on port %d", self.port)

    def purge_probes(self) -> int:
        """Erase CCTV probes older than the retention that no officer confirmed."""
        return self.retention.purge_probes()

    def purge_replies(self) -> int:
        """Erase identify-stream answers older than their retention; a later replay is searched afresh."""
        return self.retention.purge_replies()

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop serving, then write and close everything; each step runs even if one before failed."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.console is not None:  # first: no new page may start a call during the grace period
            _completed("stop the console", self.console.stop)
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
