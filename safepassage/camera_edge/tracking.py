"""Faces followed across frames, so one person walking past yields one query, not one per frame.

A simple, robust tracker on boxes and embeddings (in the spirit of SORT and
DeepSORT, without a Kalman filter): each detection frame, observed faces are
assigned greedily to live tracks by a cost of embedding distance plus box
non-overlap, gated so that a face far from a track's predicted box *and*
unlike its face never joins it. Between detection frames, boxes move on at
their last velocity, so every frame is tracked even when the detector runs
at a fraction of the frame rate.

A track is confirmed after ``min_hits`` detections (a one-off detection is
noise), ends when unseen for ``max_age_s``, and can be revived within
``revive_s`` by a face close to it in embedding space (a person hidden for a
moment stays one track). Each track keeps its best shot by quality; it is
released as ready to send once: when the track ends, or once it has lasted
``send_after_s`` (so a person who stays in view is answered without waiting
for them to leave). Tracks whose best shot stays below the quality floor are
never sent, only counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from safepassage.camera_edge.quality import Quality
from safepassage.face.errors import PipelineInputError

Box = tuple[float, float, float, float]
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrackerSettings:
    max_age_s: float = 1.0
    min_hits: int = 2
    iou_gate: float = 0.1
    center_gate: float = 1.0  # centre distance, in box widths, still counted as near
    max_embedding_distance: float = 0.6  # L2 between faces of one person (the model's 1:1 threshold)
    revive_distance: float = 0.45  # stricter: joins a track without any help from the box
    revive_s: float = 3.0
    send_after_s: float = 3.0
    quality_floor: float = 0.35

    def __post_init__(self) -> None:
        if self.max_age_s <= 0 or self.send_after_s <= 0 or self.revive_s < 0:
            raise PipelineInputError("tracker: max_age_s and send_after_s must be > 0, revive_s >= 0")
        if self.min_hits < 1:
            raise PipelineInputError("tracker: min_hits must be at least 1")
        if not 0.0 <= self.quality_floor <= 1.0:
            raise PipelineInputError("tracker: quality_floor must lie in [0, 1]")


@dataclass(frozen=True)
class Observation:
    """One detected and embedded face of a frame."""

    frame_index: int
    timestamp: float
    box: Box
    score: float
    embedding: Vector
    quality: Quality
    face_crop: bytes = b""  # the face as a small JPEG, only with the edge's send_hit_crop setting


class Release(StrEnum):
    ENDED = "ended"  # the person left (or the source ended)
    LINGERING = "lingering"  # still in view after send_after_s


@dataclass(frozen=True)
class ReadyTrack:
    """A track whose best shot should now be sent, once."""

    track_id: int
    first_seen: float
    last_seen: float
    detections: int
    best: Observation
    release: Release


@dataclass
class TrackerStats:
    started: int = 0  # every new track, confirmed or not
    confirmed: int = 0
    revived: int = 0
    released: int = 0
    below_floor: int = 0  # confirmed tracks that ended with no shot above the floor
    unconfirmed: int = 0  # tracks that ended before min_hits (noise)


@dataclass
class _Track:
    track_id: int
    box: Box
    seen_at: float
    first_seen: float
    best: Observation
    last_embedding: Vector
    velocity: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    released: bool = False

    def predicted(self, timestamp: float) -> Box:
        moved = np.asarray(self.box, dtype=np.float64) + self.velocity * (timestamp - self.seen_at)
        return (float(moved[0]), float(moved[1]), float(moved[2]), float(moved[3]))

    def distance_to(self, embedding: Vector) -> float:
        return min(
            float(np.linalg.norm(self.best.embedding - embedding)),
            float(np.linalg.norm(self.last_embedding - embedding)),
        )

    def absorb(self, observation: Observation) -> None:
        elapsed = observation.timestamp - self.seen_at
        if elapsed > 0:
            step = (np.asarray(observation.box) - np.asarray(self.box)) / elapsed
            # Smoothed: detector boxes jitter by a few pixels between frames.
            self.velocity = 0.5 * self.velocity + 0.5 * step
        self.box = observation.box
        self.seen_at = observation.timestamp
        self.last_embedding = observation.embedding
        self.hits += 1
        if observation.quality.overall > self.best.quality.overall:
            self.best = observation


def _iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: Box, b: Box, center_gate: float) -> bool:
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    width = max(a[2] - a[0], b[2] - b[0], 1.0)
    return bool(np.hypot(ax - bx, ay - by) <= center_gate * width)


class Tracker:
    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.stats = TrackerStats()
        self._live: list[_Track] = []
        self._lost: list[_Track] = []
        self._ids = itertools.count(1)

    @property
    def live_tracks(self) -> int:
        return len(self._live)

    def predicted_boxes(self, timestamp: float) -> dict[int, Box]:
        """Where each live track is expected at `timestamp` (used between detection frames)."""
        return {t.track_id: t.predicted(timestamp) for t in self._live}

    def update(self, observations: Sequence[Observation], timestamp: float) -> list[ReadyTrack]:
        """A detection frame: assign faces to tracks, start new ones, and release what is ready."""
        unmatched = self._assign(list(observations), timestamp)
        for observation in unmatched:
            self._start_or_revive(observation)
        return self.advance(timestamp)

    def advance(self, timestamp: float) -> list[ReadyTrack]:
        """Any frame: expire tracks not seen for max_age_s and release what is ready."""
        ready: list[ReadyTrack] = []
        still: list[_Track] = []
        for track in self._live:
            if timestamp - track.seen_at > self.settings.max_age_s:
                ready.extend(self._end(track))
            else:
                still.append(track)
                if (
                    not track.released
                    and track.hits >= self.settings.min_hits
                    and timestamp - track.first_seen >= self.settings.send_after_s
                    and track.best.quality.passes(self.settings.quality_floor)
                ):
                    ready.append(self._release(track, Release.LINGERING))
        self._live = still
        self._lost = [t for t in self._lost if timestamp - t.seen_at <= self.settings.revive_s]
        return ready

    def flush(self) -> list[ReadyTrack]:
        """The source ended: end every live track."""
        ready = [r for track in self._live for r in self._end(track)]
        self._live = []
        self._lost = []
        return ready

    # -- internals ---------------------------------------------------------------

    def _assign(self, observations: list[Observation], timestamp: float) -> list[Observation]:
        settings = self.settings
        pairs: list[tuple[float, int, int]] = []
        for t, track in enumerate(self._live):
            predicted = track.predicted(timestamp)
            for o, observation in enumerate(observations):
                distance = track.distance_to(observation.embedding)
                overlap = _iou(predicted, observation.box)
                near = overlap >= settings.iou_gate or _near(predicted, observation.box, settings.center_gate)
                if (
                    near and distance <= settings.max_embedding_distance
                ) or distance <= settings.revive_distance:
                    pairs.append((distance + (1.0 - overlap), t, o))
        pairs.sort()
        taken_tracks: set[int] = set()
        taken_observations: set[int] = set()
        for _, t, o in pairs:
            if t in taken_tracks or o in taken_observations:
                continue
            self._live[t].absorb(observations[o])
            taken_tracks.add(t)
            taken_observations.add(o)
            if self._live[t].hits == settings.min_hits:
                self.stats.confirmed += 1
        return [obs for o, obs in enumerate(observations) if o not in taken_observations]

    def _start_or_revive(self, observation: Observation) -> None:
        candidates = [
            (t.distance_to(observation.embedding), i)
            for i, t in enumerate(self._lost)
            if t.distance_to(observation.embedding) <= self.settings.revive_distance
        ]
        if candidates:
            _, index = min(candidates)
            track = self._lost.pop(index)
            track.velocity = np.zeros(4)
            track.absorb(observation)
            self._live.append(track)
            self.stats.revived += 1
            return
        self._live.append(
            _Track(
                track_id=next(self._ids),
                box=observation.box,
                seen_at=observation.timestamp,
                first_seen=observation.timestamp,
                best=observation,
                last_embedding=observation.embedding,
            )
        )
        self.stats.started += 1
        if self.settings.min_hits == 1:
            self.stats.confirmed += 1

    def _end(self, track: _Track) -> list[ReadyTrack]:
        if track.hits < self.settings.min_hits:
            self.stats.unconfirmed += 1
            return []
        self._lost.append(track)
        if track.released:
            return []
        if not track.best.quality.passes(self.settings.quality_floor):
            self.stats.below_floor += 1
            return []
        return [self._release(track, Release.ENDED)]

    def _release(self, track: _Track, release: Release) -> ReadyTrack:
        track.released = True
        self.stats.released += 1
        return ReadyTrack(
            track_id=track.track_id,
            first_seen=track.first_seen,
            last_seen=track.seen_at,
            detections=track.hits,
            best=track.best,
            release=release,
        )
