"""Sending the outbox to the server over the bidirectional identify stream, whenever it can be reached.

The uploader runs on its own thread and never holds up capture: queries are
in the durable outbox before it sees them. It keeps one IdentifyStream open,
sends at most ``max_in_flight`` unanswered queries (backpressure: a slow
server slows the uploader, not the camera) and records each answer in the
outbox by its query id, which is the request id the server deduplicates on.
A query unanswered after ``answer_timeout_s`` ends the stream; the stream is
reopened with exponential backoff after any failure, and unanswered queries
are simply sent again, so a dropped link, a restarted server or a restarted
client costs time, never a query, and never a second search. A query answered
with a retryable in-band error (the server busy, a dependency down) waits its
own backoff before it is sent again, never a tight loop.

The statistics count queries apart from messages: ``sent`` counts each query
once, however often it was resent, and only once its stream's connection was
up (a query written to a stream that never connected was not sent);
``attempts`` counts every message written.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.errors import OutboxError
from safepassage.camera_edge.outbox import EntryState, Outbox, OutboxEntry
from safepassage.face.errors import PipelineInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadSettings:
    max_in_flight: int = 8
    answer_timeout_s: float = 10.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.answer_timeout_s <= 0:
            raise PipelineInputError("upload: max_in_flight must be >= 1 and answer_timeout_s > 0")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise PipelineInputError("upload: need 0 < initial_backoff_s <= max_backoff_s")


@dataclass
class UploadStats:
    sent: int = 0  # queries written to a stream, each once however often it was resent
    attempts: int = 0  # messages written to a stream (a query sent twice counts twice)
    answered: int = 0
    replayed: int = 0  # answers the server had already given (a resend after a lost answer)
    failed: int = 0  # permanent in-band errors
    sessions: int = 0
    failures: int = 0  # streams that ended in an error
    connected: bool = False
    last_error: str = ""
    unreachable: str = ""  # why the server cannot be reached, since the last stream failed; "" if it can


def describe_failure(error: grpc.RpcError, target: str = "") -> str:
    """A console-worthy sentence for a stream that failed (`target`: the server's address)."""
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else "") or ""
    lowered = details.lower()
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
        return f"TLS handshake refused ({details}); check the device certificate, key and CA"
    if code is grpc.StatusCode.UNAVAILABLE:
        # gRPC's details end with the cause ("...: Connection refused", "...: Domain name not found").
        cause = details.rsplit(": ", 1)[-1] if "connect" in lowered or "dns" in lowered else details
        return f"server unreachable{f' at {target}' if target else ''} ({cause or 'no details'})"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"server refused this device: {code.name}: {details}"
    name = code.name if code is not None else type(error).__name__
    return f"stream failed: {name}: {details}"


class Uploader:
    def __init__(
        self,
        outbox: Outbox,
        channel_factory: Callable[[], grpc.Channel],
        *,
        metadata: Sequence[tuple[str, str]] = (),
        settings: UploadSettings | None = None,
        on_answer: Callable[[OutboxEntry], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        target: str = "",
    ) -> None:
        """``sleep(seconds)``: the wait between reconnection attempts (tests pass their own);
        ``target``: the server's address, named in messages."""
        self._outbox = outbox
        self._target = target
        self._channel_factory = channel_factory
        self._metadata = tuple(metadata)
        self.settings = settings or UploadSettings()
        self._on_answer = on_answer
        self.stats = UploadStats()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._not_before: dict[str, float] = {}
        self._retry_delay: dict[str, float] = {}  # per query answered with a retryable error
        self._sent_ids: set[str] = set()  # sent and not yet answered: a resend is not counted again
        # Only stop() cuts a backoff short, not wake(): a busy camera (or drain(), which wakes the
        # uploader every 50 ms) would otherwise reconnect to a dead server as fast as it fails.
        self._sleep = sleep or self._stopping.wait

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-uploader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New queries are in the outbox."""
        with self._wake:
            self._wake.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._outbox.stats().pending == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return self._outbox.stats().pending == 0

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the sending thread --------------------------------------------------------

    def _run(self) -> None:
        backoff = self.settings.initial_backoff_s
        while not self._stopping.is_set():
            if self._outbox.stats().pending == 0:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            progressed = self._session()
            if self._stopping.is_set():
                break
            backoff = (
                self.settings.initial_backoff_s
                if progressed
                else min(backoff * 2, self.settings.max_backoff_s)
            )
            # Jitter keeps a fleet of cameras from reconnecting in lockstep after an outage.
            self._sleep(backoff * random.uniform(0.8, 1.2))

    def _session(self) -> bool:
        """One stream, until it fails, times out or the uploader stops; True if any answer came."""
        self.stats.sessions += 1
        channel = self._channel_factory()
        outgoing: queue.Queue[pb.IdentifyRequest | None] = queue.Queue()
        in_flight: dict[str, float] = {}
        lock = threading.Lock()
        ended = threading.Event()
        answered_any = threading.Event()
        failure: list[grpc.RpcError] = []
        connected = threading.Event()
        unconnected: list[str] = []  # queries written before the connection was up

        def on_state(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY:
                with lock:
                    connected.set()
                    for query_id in unconnected:
                        self._count_sent(query_id)
                    unconnected.clear()

        channel.subscribe(on_state)

        def requests() -> Iterator[pb.IdentifyRequest]:
            while (item := outgoing.get()) is not None:
                yield item

        stub = pb_grpc.MatchingServiceStub(channel)
        call = stub.IdentifyStream(requests(), metadata=self._metadata)

        def read() -> None:
            try:
                for response in call:
                    with lock:
                        in_flight.pop(response.request_id, None)
                    self._answer(response)
                    answered_any.set()
                    self.stats.unreachable = ""
                    if not self.stats.connected:
                        self.stats.connected = True
                        log.info("connected to the matching server; sending queued queries")
                    self.wake()
            except grpc.RpcError as error:
                failure.append(error)
            finally:
                ended.set()
                self.wake()

        reader = threading.Thread(target=read, name="edge-uploader-reader", daemon=True)
        reader.start()
        try:
            while not self._stopping.is_set() and not ended.is_set():
                now = time.monotonic()
                with lock:
                    overdue = [
                        q for q, sent in in_flight.items() if now - sent > self.settings.answer_timeout_s
                    ]
                    room = self.settings.max_in_flight - len(in_flight)
                    busy = set(in_flight)
                if overdue:
                    self.stats.last_error = (
                        f"no answer to {len(overdue)} queries in {self.settings.answer_timeout_s} s"
                    )
                    log.warning("%s; reopening the stream", self.stats.last_error)
                    break
                if room > 0:
                    for entry in self._sendable(busy, room):
                        assert entry.request is not None
                        self._outbox.mark_sent(entry.query_id)
                        with lock:
                            in_flight[entry.query_id] = now
                            if connected.is_set():
                                self._count_sent(entry.query_id)
                            else:
                                unconnected.append(entry.query_id)
                        outgoing.put(entry.request)
                        self.stats.attempts += 1
                with self._wake:
                    self._wake.wait(0.1)
        finally:
            outgoing.put(None)
            call.cancel()  # type: ignore[no-untyped-call]
            reader.join(5.0)
            channel.unsubscribe(on_state)
            channel.close()
        real_failures = [
            e for e in failure if not (isinstance(e, grpc.Call) and e.code() is grpc.StatusCode.CANCELLED)
        ]
        if real_failures:
            self.stats.failures += 1
            message = describe_failure(real_failures[0], self._target)
            if self.stats.connected or message != self.stats.last_error:
                # Once per change, not per attempt: the backoff retries quietly.
                log.warning(
                    "%s; %d queries queued, retrying with backoff", message, self._outbox.stats().pending
                )
            self.stats.last_error = message
            self.stats.connected = False
            first = real_failures[0]
            if isinstance(first, grpc.Call) and first.code() is grpc.StatusCode.UNAVAILABLE:
                self.stats.unreachable = message
        return answered_any.is_set()

    def _count_sent(self, query_id: str) -> None:
        if query_id not in self._sent_ids:
            self._sent_ids.add(query_id)
            self.stats.sent += 1

    def _sendable(self, busy: set[str], room: int) -> list[OutboxEntry]:
        now = time.monotonic()
        entries = self._outbox.pending(limit=room + len(busy) + len(self._not_before))
        chosen = [
            e
            for e in entries
            if e.query_id not in busy
            and self._not_before.get(e.query_id, 0.0) <= now
            and e.request is not None
        ]
        return chosen[:room]

    def _answer(self, response: pb.IdentifyStreamResponse) -> None:
        try:
            entry = self._outbox.record_answer(response.request_id, response)
        except OutboxError as error:
            # Evicted while in flight (a full queue), or an id this device never sent.
            log.warning("answer to query %s not recorded: %s", response.request_id, error)
            return
        query_id = response.request_id
        if entry.state is EntryState.PENDING:  # a retryable in-band error: kept, sent again later
            delay = min(
                self._retry_delay.get(query_id, self.settings.initial_backoff_s / 2) * 2,
                self.settings.max_backoff_s,
            )
            self._retry_delay[query_id] = delay
            self._not_before[query_id] = time.monotonic() + delay * random.uniform(0.8, 1.2)
            return
        self._not_before.pop(query_id, None)
        self._retry_delay.pop(query_id, None)
        self._sent_ids.discard(query_id)
        if response.WhichOneof("outcome") == "error":
            self.stats.failed += 1
            log.warning("query %s refused: %s", query_id, response.error.message)
            return
        self.stats.answered += 1
        if response.replayed:
            self.stats.replayed += 1
        if self._on_answer is not None:
            self._on_answer(entry)
