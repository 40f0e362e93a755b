"""The kiosk's head-turn challenge run by the service on frames a caller recorded while the person turned.

The geometry is camera_edge/liveness.py's, thresholds and all (LivenessSettings, set on
benchmarks/liveness_eval.py): a frontal reference, then the nose leaving the plane of the eyes and
mouth towards the asked side, held for two frames, the tracked face never jumping. What changes
when the frames come from a caller rather than the service's own camera:

- **The caller's clock is bounded by the service's.** Each frame carries its time since the first
  (``at_ms``, increasing); the span may not exceed the challenge's time limit, nor the time since the
  service drew the challenge (plus ``slack_s``): a caller cannot claim that two photos were shown
  slowly, which would ease the tracker's speed check, beyond the time it really had.
- **The frames are checked as probes.** At most ``max_frames``; each within the image limits and a
  camera frame's size (1080p, 2 MiB), decoded within the server's decode budget, one at a time, then
  dropped.
- **No gaps, and a turn that is seen turning.** Consecutive frames are at most ``MAX_FRAME_GAP_S``
  apart, else the face was not seen (FACE_LOST): a caller cannot leave out the frames that would
  show a swap. And between
  the frontal reference and the turned frames at least one frame must show the head part-way
  (``PARTIAL_TURN`` of the asked turn): two photos of the person, one frontal and one turned, swapped
  between two frames, show parallax and one face, and a jump the tracker's speed limit allows at 15
  frames a second; no head turns without passing through the angles between (a fast real turn at 8
  frames a second still shows two or more). The check fails them as FACE_JUMPED.
- **The face that turned is the face that looked.** The reference frame (the one that passes as the
  live capture) and the frame the turn passed on are embedded and must match at the model's 1:1
  threshold: a photo of someone else held frontal, then the caller's own head turning in its place,
  fails as FACE_JUMPED even where the tracker's box and speed checks were met.

What it cannot tell: whether the frames came from a camera at all. A caller that feeds recorded or
synthesised video of the person turning the asked way passes (one replay in two guesses the side),
as would a flip-book of photos of them at three or more angles;
so does a bent photo about one time in seven (README, liveness figures). The statement it leads to
says "the service saw a 3-D head turn in these frames", no more.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage import face as faces
from safepassage.camera_edge.errors import LivenessFailed
from safepassage.camera_edge.liveness import (
    ChallengeState,
    HeadTurnChallenge,
    LivenessCheck,
    LivenessSettings,
    TurnDirection,
)
from safepassage.camera_edge.parallax import yaw_proxy
from safepassage.core.errors import FailedPrecondition, InvalidInput
from safepassage.face.detection import Detection
from safepassage.face.errors import PipelineInputError
from safepassage.matcher import pairwise_score
from safepassage.server.decode_budget import DecodeBudget

__all__ = ["MAX_FRAME_BYTES", "MAX_FRAME_PIXELS", "HeadTurnCheck", "HeadTurnOutcome", "RecordedFrame"]

# The longest time between two frames (twice the tracker's max_gap_s: a loaded browser's timer slips).
MAX_FRAME_GAP_S = 1.0
# The band of the asked turn (LivenessSettings.min_turn) a frame between frontal and turned must show.
PARTIAL_TURN = (0.25, 0.9)
MAX_FRAME_PIXELS = 1920 * 1080
MAX_FRAME_BYTES = 2 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedFrame:
    image: bytes  # JPEG or PNG, unmirrored
    at_ms: int  # since the first frame


@dataclass(frozen=True)
class HeadTurnOutcome:
    """What the check saw: passed with the reference frame's index, or the check that failed."""

    failed_check: LivenessCheck | None
    reference: int | None  # index of the frontal frame the challenge started from (passed only)
    peak_parallax: float
    peak_turn: float
    frames: int

    @property
    def passed(self) -> bool:
        return self.failed_check is None


class HeadTurnCheck:
    def __init__(
        self,
        embedder: faces.Embedder,
        limits: faces.ImageLimits,
        budget: DecodeBudget,
        settings: LivenessSettings | None = None,
        max_frames: int = 64,
        slack_s: float = 1.0,
    ) -> None:
        self._embedder = embedder
        # A camera frame, not a photo: at most a 1080p frame's pixels and 2 MiB (the console sends
        # 640 px JPEGs of ~20 KB), so 64 frames cannot buy minutes of detector time.
        self._limits = faces.ImageLimits(
            max_bytes=min(limits.max_bytes, MAX_FRAME_BYTES),
            max_pixels=min(limits.max_pixels, MAX_FRAME_PIXELS),
            min_side=limits.min_side,
        )
        self._budget = budget
        self.settings = settings or LivenessSettings()
        self.max_frames = max_frames
        self._slack_s = slack_s

    def available(self) -> None:
        """FAILED_PRECONDITION unless the server runs a five-point detector (the ONNX pipeline)."""
        if getattr(self._embedder, "pipeline", None) is None:
            raise FailedPrecondition(
                "the head-turn check needs the ONNX face pipeline (faces.backend = onnx)"
            )

    def _check_times(self, frames: Sequence[RecordedFrame], elapsed_s: float) -> None:
        if not 2 <= len(frames) <= self.max_frames:
            raise InvalidInput(f"frames: give between 2 and {self.max_frames} frames, got {len(frames)}")
        times = [frame.at_ms for frame in frames]
        if any(later <= earlier for earlier, later in itertools.pairwise(times)):
            raise InvalidInput("frames: at_ms must increase from one frame to the next")

        span_s = (times[-1] - times[0]) / 1000
        limit_s = self.settings.time_limit_s
        if span_s > limit_s:
            raise InvalidInput(
                f"frames: they span {span_s:.1f} s; the turn must be recorded within {limit_s:g} s"
            )
        if span_s > elapsed_s + self._slack_s:
            raise InvalidInput(
                f"frames: they claim to span {span_s:.1f} s, but the challenge was issued"
                f" {elapsed_s:.1f} s ago"
            )

    def _decoded(self, image: bytes, field: str) -> npt.NDArray[np.uint8]:
        try:
            return faces.decode_image(image, self._limits)
        except faces.ImageDecodeError as error:
            raise InvalidInput(f"{field}: {error}") from None

    def run(
        self, direction: TurnDirection, frames: Sequence[RecordedFrame], elapsed_s: float
    ) -> HeadTurnOutcome:
        """Run the challenge over ``frames``; ``elapsed_s``: seconds since the challenge was drawn."""
        self.available()
        self._check_times(frames, elapsed_s)
        longest = max(later.at_ms - earlier.at_ms for earlier, later in itertools.pairwise(frames)) / 1000
        if longest > MAX_FRAME_GAP_S:
            # Frames left out are a face not seen (a swap could hide there): the person tries again.
            log.info("liveness failed: %.2f s between two frames", longest)
            return HeadTurnOutcome(LivenessCheck.FACE_LOST, None, 0.0, 0.0, 0)
        pipeline = getattr(self._embedder, "pipeline")  # noqa: B009 (checked by available())
        challenge = HeadTurnChallenge(direction, pipeline.detector, self.settings)
        reference: int | None = None
        observed = 0
        yaws: list[float | None] = []  # the largest face's yaw proxy in each frame read
        try:
            for index, frame in enumerate(frames):
                field = f"frames[{index}]"
                try:
                    header = faces.read_header(frame.image, self._limits)
                except faces.ImageDecodeError as error:
                    raise InvalidInput(f"{field}: {error}") from None
                with self._budget.reserve(header.decode_bytes):
                    image = self._decoded(frame.image, field)
                    before = challenge.state
                    detections = pipeline.detector.detect(image)
                    state = challenge.observe(frame.at_ms / 1000, image, detections)
                    del image
                yaws.append(_yaw_of_largest(detections))
                observed = index + 1
                if before is ChallengeState.WAITING_FRONTAL and state is not ChallengeState.WAITING_FRONTAL:
                    reference = index
                if state is ChallengeState.PASSED:
                    break
            challenge.result()
        except LivenessFailed:
            return self._outcome(challenge, None, observed)
        assert reference is not None
        if not self._turned_through(direction, yaws, reference):
            log.info("liveness failed: the head went from frontal to turned with no frame between")
            return HeadTurnOutcome(
                LivenessCheck.FACE_JUMPED,
                None,
                challenge.peak_parallax or 0.0,
                challenge.peak_turn or 0.0,
                observed,
            )
        if not self._same_face(frames[reference].image, frames[observed - 1].image):
            log.info("liveness failed: the face that turned is not the face of the reference frame")
            return HeadTurnOutcome(
                LivenessCheck.FACE_JUMPED,
                None,
                challenge.peak_parallax or 0.0,
                challenge.peak_turn or 0.0,
                observed,
            )
        return self._outcome(challenge, reference, observed)

    @staticmethod
    def _outcome(challenge: HeadTurnChallenge, reference: int | None, observed: int) -> HeadTurnOutcome:
        failed = None if reference is not None else (challenge.failed_check or LivenessCheck.NO_TURN)
        return HeadTurnOutcome(
            failed, reference, challenge.peak_parallax or 0.0, challenge.peak_turn or 0.0, observed
        )

    def _turned_through(self, direction: TurnDirection, yaws: Sequence[float | None], reference: int) -> bool:
        """Whether a frame after the reference shows the head part-way through the asked turn."""
        start = yaws[reference]
        if start is None:
            return False
        sign = direction.image_sign(self.settings.mirrored)
        low, high = (share * self.settings.min_turn for share in PARTIAL_TURN)
        return any(yaw is not None and low <= sign * (yaw - start) < high for yaw in yaws[reference + 1 :])

    def _same_face(self, reference: bytes, turned: bytes) -> bool:
        """Whether the largest faces of the two frames match at the model's 1:1 threshold."""
        vectors = []
        for data in (reference, turned):
            with self._budget.reserve(faces.read_header(data, self._limits).decode_bytes):
                found = self._embedder.embed(self._decoded(data, "frames"), faces.FaceSelection.LARGEST)
            if not found:
                return False
            vectors.append(np.asarray(found[0].embedding, dtype=np.float32))
        model = self._embedder.model
        return model.metric.is_match(
            pairwise_score(vectors[0], vectors[1], model.metric), model.default_threshold
        )


def _yaw_of_largest(detections: Sequence[Detection]) -> float | None:
    """The yaw proxy of the largest face (the one the challenge follows); None without a usable one."""
    if not detections:
        return None
    try:
        return yaw_proxy(max(detections, key=lambda d: d.width * d.height).points)
    except PipelineInputError:
        return None
