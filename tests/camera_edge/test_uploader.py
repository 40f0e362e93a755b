"""The uploader on the wire: backpressure, the answer timeout and reconnection backoff.

The server here is a real gRPC server on a free port that implements IdentifyStream
as a slow or silent matching server would, and records every message it receives
on each stream; the uploader talks to it over the edge's own channel (plaintext on
loopback) from a real outbox file. Nothing waits on the clock: the tests wait for
conditions with generous bounds, and the reconnection delays are read from the
uploader's injected ``sleep``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.connection import open_channel
from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.outbox import EntryState, Outbox
from safepassage.camera_edge.uploader import Uploader, UploadSettings

QUERIES = 10
MAX_IN_FLIGHT = 3
BOUND_S = 30.0  # generous: a condition that holds is met in well under a second


class RecordingMatching(pb_grpc.MatchingServiceServicer):
    """IdentifyStream that records what arrives; the first ``silent_streams`` streams never answer.

    The other streams answer each query as it arrives. ``unanswered_at_receipt`` holds, for
    every message received, how many of its stream's queries were then still unanswered (an
    answer counts from the moment it is handed to gRPC, before it can reach the client).
    """

    def __init__(self, silent_streams: int) -> None:
        self.silent_streams = silent_streams
        self.changed = threading.Condition()
        self.streams: list[list[str]] = []  # request ids received, per stream, in order
        self.ended: list[bool] = []  # the client ended (cancelled) the stream
        self.unanswered_at_receipt: list[int] = []

    def IdentifyStream(
        self, request_iterator: Iterable[pb.IdentifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.IdentifyStreamResponse]:
        with self.changed:
            index = len(self.streams)
            self.streams.append([])
            self.ended.append(False)
        answered = [0]
        arrived: queue.Queue[pb.IdentifyRequest | None] = queue.Queue()

        def read() -> None:
            try:
                for request in request_iterator:
                    with self.changed:
                        self.streams[index].append(request.request_id)
                        self.unanswered_at_receipt.append(len(self.streams[index]) - answered[0])
                        self.changed.notify_all()
                    arrived.put(request)
            except grpc.RpcError:
                pass  # the client cancelled the stream
            finally:
                arrived.put(None)
                with self.changed:
                    self.ended[index] = True
                    self.changed.notify_all()

        threading.Thread(target=read, daemon=True).start()
        while (request := arrived.get()) is not None:
            if index < self.silent_streams:
                continue
            with self.changed:
                answered[0] += 1
            yield pb.IdentifyStreamResponse(
                request_id=request.request_id,
                result=pb.IdentifyResponse(request_id=request.request_id, decision=pb.NO_MATCH),
            )

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, BOUND_S), f"{what}; streams: {self.streams}"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.sqlite3", DeviceKey.load_or_create(tmp_path / "device.key")) as box:
        yield box


def enqueue(outbox: Outbox, count: int) -> list[str]:
    """`count` queries (embeddings, as the edge sends them), oldest first: their query ids."""
    rng = np.random.default_rng(16)
    ids = []
    for track in range(count):
        vector = rng.normal(size=128).astype(np.float32)
        probe = pb.Probe(embedding=pb.Embedding(values=vector.tolist()))
        request = pb.IdentifyRequest(gallery_id="cams", probe=probe)
        ids.append(outbox.enqueue(request, track_id=track, frame_time=float(track)).query_id)
    return ids


def serve(servicer: RecordingMatching) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_MatchingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    return server, port


def test_no_more_than_max_in_flight_unanswered_and_an_unanswered_query_is_resent(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The first stream never answers: the uploader sends its `max_in_flight` oldest queries and no
    more, gives up on the stream after `answer_timeout_s`, keeps the queries queued and sends them
    again on a new stream, whose server answers; at no time were more queries unanswered."""
    ids = enqueue(outbox, QUERIES)
    servicer = RecordingMatching(silent_streams=1)  # type: ignore[abstract]  # only IdentifyStream is served
    server, port = serve(servicer)
    settings = UploadSettings(
        max_in_flight=MAX_IN_FLIGHT, answer_timeout_s=3.0, initial_backoff_s=0.05, max_backoff_s=0.1
    )
    uploader = Uploader(outbox, lambda: open_channel(f"localhost:{port}", None), settings=settings)
    caplog.set_level(logging.WARNING, logger="safepassage.camera_edge.uploader")
    uploader.start()
    try:
        # While the first stream waits for answers that never come, nothing more is sent on it.
        servicer.wait_for(lambda: bool(servicer.ended) and servicer.ended[0], "the silent stream went on")
        assert uploader.drain(BOUND_S), outbox.stats()
    finally:
        uploader.stop()
        server.stop(grace=None)

    first, *later = servicer.streams
    assert first == ids[:MAX_IN_FLIGHT], "the oldest queries, no more than max_in_flight"
    assert max(servicer.unanswered_at_receipt) == MAX_IN_FLIGHT, servicer.unanswered_at_receipt
    resent = [query_id for stream in later for query_id in stream]
    assert sorted(resent) == sorted(ids), "each query sent once more after the timeout, the unanswered too"
    assert [outbox.get(q).attempts for q in ids] == [2] * MAX_IN_FLIGHT + [1] * (QUERIES - MAX_IN_FLIGHT)
    assert all(outbox.get(q).state is EntryState.ANSWERED for q in ids)
    # Queries are counted once however often they were sent; messages are counted apart.
    assert uploader.stats.sent == QUERIES and uploader.stats.answered == QUERIES
    assert uploader.stats.attempts == QUERIES + MAX_IN_FLIGHT
    assert f"no answer to {MAX_IN_FLIGHT} queries in 3.0 s; reopening the stream" in caplog.messages


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def test_reconnection_attempts_back_off_exponentially_to_the_cap(outbox: Outbox) -> None:
    """Against a port with nothing listening, each failed attempt doubles the wait (with +-20%
    jitter) up to `max_backoff_s`, and the query stays queued."""
    (query_id,) = enqueue(outbox, 1)
    port = free_port()
    delays: list[float] = []
    enough, release = threading.Event(), threading.Event()
    channels = [0]

    def channel() -> grpc.Channel:
        channels[0] += 1
        return open_channel(f"localhost:{port}", None)

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 7:  # held here, the uploader's figures stay still while they are read
            enough.set()
            release.wait(BOUND_S)

    settings = UploadSettings(initial_backoff_s=0.5, max_backoff_s=4.0)
    uploader = Uploader(outbox, channel, settings=settings, sleep=sleep, target=f"localhost:{port}")
    uploader.start()
    try:
        assert enough.wait(BOUND_S), f"only {len(delays)} attempts: {delays}"
        stats = uploader.stats
        assert stats.sessions == channels[0] == len(delays) and stats.failures == len(delays), stats
        assert stats.answered == 0 and f"server unreachable at localhost:{port}" in stats.last_error, stats
        # Written to streams none of which ever connected: nothing was sent.
        assert stats.sent == 0 and stats.attempts <= len(delays) and stats.unreachable, stats
    finally:
        uploader.stop(timeout=0)  # the thread ends once released from its sleep
        release.set()
    bases = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]  # initial x 2 after the first failure, then capped
    assert len(delays) == len(bases), delays
    for delay, base in zip(delays, bases, strict=True):
        assert 0.8 * base <= delay <= 1.2 * base, delays
    assert delays[0] < delays[1] < delays[2], delays
    assert outbox.get(query_id).state is EntryState.PENDING and outbox.stats().pending == 1


def test_stop_ends_a_long_backoff_at_once(outbox: Outbox) -> None:
    """The default wait between attempts (10 minutes here) is cut short by stop(): a shutdown."""
    enqueue(outbox, 1)
    port = free_port()
    settings = UploadSettings(initial_backoff_s=600.0, max_backoff_s=600.0)
    uploader = Uploader(outbox, lambda: open_channel(f"localhost:{port}", None), settings=settings)
    before = set(threading.enumerate())
    uploader.start()
    (thread,) = [t for t in set(threading.enumerate()) - before if t.name == "edge-uploader"]
    deadline = time.monotonic() + BOUND_S
    while uploader.stats.failures == 0:
        assert time.monotonic() < deadline, "the first attempt never failed"
        time.sleep(0.02)
    uploader.stop(timeout=BOUND_S)
    assert not thread.is_alive(), "stop() waited out the backoff"
    assert uploader.stats.sessions == 1


class RefusingMatching(pb_grpc.MatchingServiceServicer):
    """IdentifyStream answering every query with an in-band UNAVAILABLE (a dependency down)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.received: list[tuple[float, str]] = []  # (monotonic time, request id)

    def IdentifyStream(
        self, request_iterator: Iterable[pb.IdentifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.IdentifyStreamResponse]:
        for request in request_iterator:
            with self.changed:
                self.received.append((time.monotonic(), request.request_id))
                self.changed.notify_all()
            yield pb.IdentifyStreamResponse(
                request_id=request.request_id,
                error=pb.Error(code=grpc.StatusCode.UNAVAILABLE.value[0], message="the index is loading"),
            )


def test_a_retryable_in_band_error_backs_off_per_query_and_counts_the_query_once(outbox: Outbox) -> None:
    """A server that answers "retry" in band kept the stream busy: the query was resent at once,
    over and over, and each resend counted as sent ("sent 516" for 2 queries). Now each retry
    waits twice as long as the one before (+-20 %), and the query counts once."""
    (query_id,) = enqueue(outbox, 1)
    servicer = RefusingMatching()  # type: ignore[abstract]  # only IdentifyStream is served
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_MatchingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    settings = UploadSettings(initial_backoff_s=0.2, max_backoff_s=5.0)
    uploader = Uploader(outbox, lambda: open_channel(f"localhost:{port}", None), settings=settings)
    uploader.start()
    try:
        with servicer.changed:
            assert servicer.changed.wait_for(lambda: len(servicer.received) >= 4, BOUND_S), servicer.received
            times = [at for at, _ in servicer.received[:4]]
        stats = uploader.stats
    finally:
        uploader.stop()
        server.stop(grace=None)
    assert {q for _, q in servicer.received} == {query_id}
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Lower bounds only: a loaded machine makes the gaps longer, never shorter.
    for gap, wait in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert gap >= 0.8 * wait, gaps
    assert stats.sent == 1 and stats.attempts >= 4 and stats.answered == 0, stats
    assert outbox.get(query_id).state is EntryState.PENDING
