"""The edge loop: frames in, one query per tracked person out.

Every frame the capture loop delivers is tracked; detection (and embedding of
the faces it finds) runs at most ``detect_fps`` times a second, by media time,
and boxes move on by their velocity in between. This is how a cheap device
keeps up with a 15 fps camera: the detector costs tens of milliseconds, a
tracked frame almost nothing. When a track is ready (see `tracking`), its best
shot becomes an identify query handed to a `QuerySink` (the durable outbox):
processing never waits for the network.

By default only embeddings leave the device, never images: the server needs
nothing else to search, and an intercepted query shows no face. With
``send_face_crop`` (``[server] send_hit_crop``, off by default) each query
also carries its best shot's face as a small JPEG (at most 160 px) for the
reviewers of a hit: the server keeps it, sealed, only if the search is a hit,
and drops it otherwise. The edge cannot know a hit before the answer, so every
query carries one while the setting is on (over mutual TLS; in the encrypted
outbox until answered).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.quality import QualitySettings, assess
from safepassage.camera_edge.sources import Frame
from safepassage.camera_edge.tracking import Observation, ReadyTrack, Tracker, TrackerSettings
from safepassage.face.embedder import FaceBox
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import FacePipeline
from safepassage.face.reference_crop import reference_crop

log = logging.getLogger(__name__)


class QuerySink(Protocol):
    def submit(self, request: pb.IdentifyRequest, track: ReadyTrack) -> str:
        """Keep the query durably (or send it); returns its query id."""
        ...


@dataclass(frozen=True)
class LoopSettings:
    gallery_id: str
    detect_fps: float = 5.0
    top_k: int = 1
    send_face_crop: bool = False  # each query carries its face as a small JPEG, for a hit's reviewers
    quality: QualitySettings = field(default_factory=QualitySettings)
    tracking: TrackerSettings = field(default_factory=TrackerSettings)

    def __post_init__(self) -> None:
        if not 0 < self.detect_fps <= 120:
            raise PipelineInputError(f"detect_fps must lie in (0, 120], got {self.detect_fps}")
        if not 1 <= self.top_k <= 100:
            raise PipelineInputError(f"top_k must lie in [1, 100], got {self.top_k}")


@dataclass
class LoopStats:
    """What the loop did; seconds per stage are summed wall time on the processing thread."""

    frames: int = 0
    detection_frames: int = 0
    faces: int = 0
    queries: int = 0
    detect_s: float = 0.0
    embed_s: float = 0.0  # landmarks, alignment and the embedding network
    quality_s: float = 0.0
    track_s: float = 0.0
    submit_s: float = 0.0
    busy_s: float = 0.0  # everything the processing thread did per frame

    def stage_shares(self) -> dict[str, float]:
        busy = max(self.busy_s, 1e-9)
        stages = {
            "detect": self.detect_s,
            "embed": self.embed_s,
            "quality": self.quality_s,
            "track": self.track_s,
            "submit": self.submit_s,
        }
        stages["other"] = max(0.0, busy - sum(stages.values()))
        return {name: seconds / busy for name, seconds in stages.items()}


class EdgeLoop:
    def __init__(
        self,
        pipeline: FacePipeline,
        sink: QuerySink,
        settings: LoopSettings,
        on_query: Callable[[ReadyTrack, str], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.settings = settings
        self.tracker = Tracker(settings.tracking)
        self.stats = LoopStats()
        self._on_query = on_query
        self._next_detection: float | None = None

    def run(self, frames: Iterable[Frame]) -> LoopStats:
        """Process frames until the iterable ends, then release every live track."""
        for frame in frames:
            self.process(frame)
        self.finish()
        return self.stats

    def process(self, frame: Frame) -> list[ReadyTrack]:
        started = time.perf_counter()
        self.stats.frames += 1
        interval = 1.0 / self.settings.detect_fps
        # Scheduled on a grid, not from the last detection, so 5 fps on a 12 fps camera averages 5
        # (gaps of 2 and 3 frames), not 4; a small tolerance absorbs timestamp jitter.
        if self._next_detection is None or frame.timestamp >= self._next_detection - interval * 0.05:
            grid = (self._next_detection or frame.timestamp) + interval
            self._next_detection = grid if grid > frame.timestamp else frame.timestamp + interval
            observations = self._observe(frame)
            tracked = time.perf_counter()
            ready = self.tracker.update(observations, frame.timestamp)
        else:
            tracked = time.perf_counter()
            ready = self.tracker.advance(frame.timestamp)
        self.stats.track_s += time.perf_counter() - tracked
        self._submit(ready)
        self.stats.busy_s += time.perf_counter() - started
        return ready

    def finish(self) -> list[ReadyTrack]:
        started = time.perf_counter()
        ready = self.tracker.flush()
        self._submit(ready)
        self.stats.busy_s += time.perf_counter() - started
        return ready

    def _observe(self, frame: Frame) -> list[Observation]:
        self.stats.detection_frames += 1
        started = time.perf_counter()
        detections = self.pipeline.detector.detect(frame.image)
        detected = time.perf_counter()
        self.stats.detect_s += detected - started
        if not detections:
            return []
        faces = self.pipeline.embed_detections(frame.image, detections)
        embedded = time.perf_counter()
        self.stats.embed_s += embedded - detected
        qualities = [assess(frame.image, d, self.settings.quality) for d in detections]
        self.stats.quality_s += time.perf_counter() - embedded
        self.stats.faces += len(faces)
        return [
            Observation(
                frame_index=frame.index,
                timestamp=frame.timestamp,
                box=face.box,
                score=face.score,
                embedding=np.asarray(face.embedding, dtype=np.float32),
                quality=quality,
                face_crop=self._crop(frame, face.box) if self.settings.send_face_crop else b"",
            )
            for face, quality in zip(faces, qualities, strict=True)
        ]

    @staticmethod
    def _crop(frame: Frame, box: tuple[float, float, float, float]) -> bytes:
        height, width = frame.image.shape[:2]
        left, top = max(0, int(box[0])), max(0, int(box[1]))
        right, bottom = (
            min(width, max(left + 1, round(box[2]))),
            min(height, max(top + 1, round(box[3]))),
        )
        return reference_crop(frame.image, FaceBox(left, top, right, bottom))

    def _submit(self, ready: list[ReadyTrack]) -> None:
        if not ready:
            return
        started = time.perf_counter()
        for track in ready:
            request = pb.IdentifyRequest(
                gallery_id=self.settings.gallery_id,
                probe=pb.Probe(embedding=pb.Embedding(values=track.best.embedding.tolist())),
                top_k=self.settings.top_k,
                face_crop=track.best.face_crop,
            )
            query_id = self.sink.submit(request, track)
            self.stats.queries += 1
            log.info(
                "track %d queued as query %s (best shot at %.2f s, quality %.2f, %s)",
                track.track_id,
                query_id,
                track.best.timestamp,
                track.best.quality.overall,
                track.release.value,
            )
            if self._on_query is not None:
                self._on_query(track, query_id)
        self.stats.submit_s += time.perf_counter() - started
