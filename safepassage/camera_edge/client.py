"""The CCTV edge client: capture -> edge loop -> durable outbox -> uploader, from one camera's config.

Three threads that never wait on each other: the capture loop reads the
camera (dropping and counting frames when processing falls behind), the
processing thread tracks faces and puts each person's best shot in the
outbox, and the uploader sends the outbox whenever the server can be
reached. At the end of a finite source the client waits (up to a limit) for
the outbox to drain, reporting that wait about once a second (`WaitProgress`:
how many are queued, whether the server can be reached, how long is left),
and reports what happened; whatever is still queued stays on disk for the
next run, which sends it first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.capture import CaptureLoop, ReconnectPolicy
from safepassage.camera_edge.config import EdgeConfig
from safepassage.camera_edge.connection import open_channel
from safepassage.camera_edge.edge_loop import EdgeLoop, LoopSettings, LoopStats
from safepassage.camera_edge.errors import CredentialsError, OutboxFull
from safepassage.camera_edge.outbox import Outbox, OutboxEntry
from safepassage.camera_edge.quality import QualitySettings
from safepassage.camera_edge.sources import open_source
from safepassage.camera_edge.tracking import ReadyTrack, TrackerSettings
from safepassage.camera_edge.uploader import Uploader, UploadSettings
from safepassage.face.pipeline import FacePipeline, load_pipeline

log = logging.getLogger(__name__)
# The server's metadata key for a signed CCTV authorisation (tests check it equals the server's).
AUTHORISATION_METADATA_KEY = "x-safepassage-authorisation"


@dataclass(frozen=True)
class TrackResult:
    """What the server answered for one track's query."""

    track_id: int
    frame_time: float
    query_id: str
    decision: str  # MATCH, NO_MATCH or FAILED
    reference_id: str
    score: float
    replayed: bool

    def line(self) -> str:
        minutes, seconds = divmod(self.frame_time, 60)
        when = f"{int(minutes):02d}:{seconds:05.2f}"
        if self.decision == "MATCH":
            return f"track {self.track_id} at {when}: MATCH {self.reference_id} (score {self.score:.3f})"
        if self.decision == "NO_MATCH":
            return f"track {self.track_id} at {when}: no match"
        return f"track {self.track_id} at {when}: refused by the server"


def result_of(entry: OutboxEntry) -> TrackResult:
    response = entry.response
    decision, reference_id, score, replayed = "FAILED", "", 0.0, False
    if response is not None and response.WhichOneof("outcome") == "result":
        result = response.result
        decision = pb.Decision.Name(result.decision)
        replayed = response.replayed
        if result.faces and result.faces[0].candidates:
            best = result.faces[0].candidates[0]
            reference_id, score = (best.reference_id, best.score) if best.match else ("", best.score)
    return TrackResult(
        entry.track_id, entry.frame_time, entry.query_id, decision, reference_id, score, replayed
    )


@dataclass(frozen=True)
class EdgeSummary:
    frames_read: int
    frames_dropped: int
    frames_processed: int
    detection_frames: int
    faces: int
    tracks: int
    tracks_below_floor: int
    queries: int
    sent: int  # queries sent at least once (however often each was resent)
    answered: int
    matches: int
    still_queued: int
    failed: int
    dropped_when_full: int
    elapsed_s: float
    last_error: str

    def lines(self) -> list[str]:
        return [
            f"frames read {self.frames_read}, dropped {self.frames_dropped},"
            f" processed {self.frames_processed}"
            f" ({self.detection_frames} with detection) in {self.elapsed_s:.1f} s",
            f"faces {self.faces}, tracks {self.tracks} ({self.tracks_below_floor} below the quality floor)",
            f"queries {self.queries}: sent {self.sent}, answered {self.answered} ({self.matches} matches),"
            f" still queued {self.still_queued}, refused {self.failed},"
            f" dropped (queue full) {self.dropped_when_full}",
        ] + ([f"last error: {self.last_error}"] if self.last_error else [])


@dataclass(frozen=True)
class WaitProgress:
    """The wait for answers at the end of a run (or a drain), reported about once a second."""

    address: str
    queued: int
    answered: int  # answers received since the client started
    left_s: float
    timeout_s: float
    unreachable: str  # why the server cannot be reached now; "" when it can, or has not been tried


class _OutboxSink:
    def __init__(self, outbox: Outbox, uploader: Uploader) -> None:
        self._outbox = outbox
        self._uploader = uploader

    def submit(self, request: pb.IdentifyRequest, track: ReadyTrack) -> str:
        try:
            entry = self._outbox.enqueue(request, track_id=track.track_id, frame_time=track.best.timestamp)
        except OutboxFull as error:
            # Every entry is an unreviewed hit: the outbox counted the refusal; the camera goes on.
            log.error("track %d not queued: %s", track.track_id, error)
            return ""
        self._uploader.wake()
        return entry.query_id


class EdgeClient:
    def __init__(
        self,
        config: EdgeConfig,
        *,
        pipeline: FacePipeline | None = None,
        on_result: Callable[[TrackResult], None] | None = None,
        on_progress: Callable[[LoopStats], None] | None = None,
        on_wait: Callable[[WaitProgress], None] | None = None,
    ) -> None:
        self.config = config
        server = config.server
        # Files are checked before anything starts: bad certificates are a clear error, not a retry loop.
        self._credentials = server.credentials()
        self._metadata: list[tuple[str, str]] = []
        if server.authorisation is not None:
            try:
                token = server.authorisation.read_text().strip()
            except OSError as error:
                raise CredentialsError(
                    f"cannot read the CCTV authorisation {server.authorisation}: {error.strerror}"
                ) from None
            self._metadata.append((AUTHORISATION_METADATA_KEY, token))
        self.outbox = Outbox.open(
            config.queue.path,
            config.queue.device_key(),
            max_entries=config.queue.max_entries,
        )
        self._on_result = on_result
        self._on_progress = on_progress
        self._on_wait = on_wait
        self.results: list[TrackResult] = []
        self.uploader = Uploader(
            self.outbox,
            self._channel,
            metadata=self._metadata,
            settings=UploadSettings(
                max_in_flight=server.max_in_flight, answer_timeout_s=server.answer_timeout_s
            ),
            on_answer=self._answered,
            target=server.address,
        )
        self._pipeline = pipeline

    def _channel(self) -> grpc.Channel:
        return open_channel(
            self.config.server.address, self._credentials, server_name=self.config.server.server_name
        )

    def _answered(self, entry: OutboxEntry) -> None:
        result = result_of(entry)
        self.results.append(result)
        log.info("%s (query %s)", result.line(), result.query_id)
        if self._on_result is not None:
            self._on_result(result)

    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = load_pipeline(self.config.detection.pipeline_settings())
        return self._pipeline

    def run(self, drain_timeout_s: float = 30.0) -> EdgeSummary:
        """Process the source to its end (or until interrupted), then wait for the outbox to drain."""
        config = self.config
        started = time.monotonic()
        source = open_source(config.source.spec())
        capture = CaptureLoop(
            source,
            pace=config.source.pace,
            max_fps=config.source.max_fps,
            reconnect=ReconnectPolicy(max_attempts=config.source.reconnect_max_attempts),
        )
        loop = EdgeLoop(
            self.pipeline(),
            _OutboxSink(self.outbox, self.uploader),
            LoopSettings(
                gallery_id=config.server.gallery_id,
                detect_fps=config.detection.detect_fps,
                top_k=config.server.top_k,
                send_face_crop=config.server.send_hit_crop,
                quality=QualitySettings(),
                tracking=TrackerSettings(
                    max_age_s=config.tracking.max_age_s,
                    send_after_s=config.tracking.send_after_s,
                    min_hits=config.tracking.min_hits,
                    quality_floor=config.quality.floor,
                ),
            ),
        )
        capture.start()  # a source that cannot be opened fails here, before anything is sent
        self.uploader.start()
        try:
            last_progress = time.monotonic()
            for frame in capture.frames():
                loop.process(frame)
                if self._on_progress is not None and time.monotonic() - last_progress >= 1.0:
                    last_progress = time.monotonic()
                    self._on_progress(loop.stats)
            loop.finish()
        finally:
            capture.stop()
        self._wait_for_answers(drain_timeout_s)
        self.uploader.stop()
        return self._summary(started, loop, capture)

    def drain(self, timeout_s: float) -> EdgeSummary:
        """Send what an earlier run left queued, without a camera."""
        started = time.monotonic()
        self.uploader.start()
        self._wait_for_answers(timeout_s)
        self.uploader.stop()
        return self._summary(started, None, None)

    def _wait_for_answers(self, timeout_s: float) -> None:
        """Wait until nothing is queued or `timeout_s` passes, reporting about once a second."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.0, deadline - time.monotonic())
            queued = self.outbox.stats().pending
            if self._on_wait is not None and queued:
                stats = self.uploader.stats
                self._on_wait(
                    WaitProgress(
                        self.config.server.address, queued, stats.answered, left, timeout_s, stats.unreachable
                    )
                )
            if queued == 0 or left == 0 or self.uploader.drain(min(1.0, left)):
                return

    def close(self) -> None:
        self.uploader.stop()
        self.outbox.close()

    def _summary(self, started: float, loop: EdgeLoop | None, capture: CaptureLoop | None) -> EdgeSummary:
        queue = self.outbox.stats()
        captured = capture.stats() if capture is not None else None
        stats = loop.stats if loop is not None else LoopStats()
        tracker = loop.tracker.stats if loop is not None else None
        return EdgeSummary(
            frames_read=captured.frames_read if captured else 0,
            frames_dropped=captured.frames_dropped if captured else 0,
            frames_processed=stats.frames,
            detection_frames=stats.detection_frames,
            faces=stats.faces,
            tracks=tracker.confirmed if tracker else 0,
            tracks_below_floor=tracker.below_floor if tracker else 0,
            queries=stats.queries,
            sent=self.uploader.stats.sent,
            answered=self.uploader.stats.answered,
            matches=sum(1 for r in self.results if r.decision == "MATCH"),
            still_queued=queue.pending,
            failed=queue.failed,
            dropped_when_full=queue.dropped_when_full,
            elapsed_s=time.monotonic() - started,
            last_error=self.uploader.stats.last_error,
        )
