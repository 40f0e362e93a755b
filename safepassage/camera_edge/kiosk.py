"""Kiosk mode: guided capture of the person in front of the camera, with an active liveness check.

At an officer's desk or an NGO kiosk the person stands before the camera and
the kiosk talks them through it, one prompt at a time (come closer, look at
the camera, hold still, find better light), until a few consecutive frames
pass the quality gate; the sharpest of them is the capture. Then it draws a
random head-turn challenge (`liveness`): the capture is accepted only once the
face, followed without a break from the capture on, turns the asked way as a
real head does. A printed photo or a screen moves as a plane and fails.

Only then does the kiosk ask the server: `verify` (1:1 against a reference id,
the officer's checkpoint flow) or `identify` (1:N). Both send the embedding,
never the image. A kiosk waits for its answer, so it does not queue: an
unreachable server is an error the officer sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import grpc
import numpy as np
import numpy.typing as npt

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.errors import CaptureTimedOut, ServerUnreachable
from safepassage.camera_edge.liveness import (
    ChallengeState,
    HeadTurnChallenge,
    LivenessEvidence,
    LivenessSettings,
)
from safepassage.camera_edge.quality import Quality, QualitySettings, assess
from safepassage.camera_edge.sources import Frame
from safepassage.face.detection import Detection
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import FacePipeline

log = logging.getLogger(__name__)


class Prompt(StrEnum):
    STAND_IN_FRONT = "Please stand in front of the camera"
    ONE_PERSON = "One person at a time, please"
    COME_CLOSER = "Please come a little closer"
    LOOK_AT_CAMERA = "Please look straight at the camera"
    MORE_LIGHT = "Please turn towards the light"
    HOLD_STILL = "Please hold still"
    CAPTURED = "Thank you. Now follow the next instruction"
    DONE = "Thank you, that is all"


class KioskStep(StrEnum):
    POSITIONING = "positioning"  # guiding the person until the quality gate passes
    CHALLENGE = "challenge"  # the head-turn challenge is running
    DONE = "done"  # capture accepted, liveness passed


@dataclass(frozen=True)
class KioskSettings:
    """The quality gate (each factor of `quality.Quality` on its own) and the session's limits."""

    min_size: float = 1.0  # the face fills at least QualitySettings.good_face_side
    min_sharpness: float = 0.5
    min_pose: float = 0.7
    min_lighting: float = 0.8
    steady_frames: int = 3  # consecutive frames through the gate before the capture
    other_face_ratio: float = 0.6  # a second face at least this size of the first: two people
    time_limit_s: float = 30.0
    quality: QualitySettings = field(default_factory=QualitySettings)
    liveness: LivenessSettings = field(default_factory=LivenessSettings)

    def __post_init__(self) -> None:
        if self.steady_frames < 1 or self.time_limit_s <= 0:
            raise PipelineInputError("kiosk: steady_frames must be >= 1 and time_limit_s > 0")


@dataclass(frozen=True)
class KioskCapture:
    embedding: npt.NDArray[np.float32]
    quality: Quality
    frame_time: float
    liveness: LivenessEvidence


def gate_prompt(quality: Quality, settings: KioskSettings) -> Prompt | None:
    """The first thing to fix, in the order a person can act on it; None when the face passes."""
    if quality.size < settings.min_size:
        return Prompt.COME_CLOSER
    if quality.pose < settings.min_pose:
        return Prompt.LOOK_AT_CAMERA
    if quality.lighting < settings.min_lighting:
        return Prompt.MORE_LIGHT
    if quality.sharpness < settings.min_sharpness:
        return Prompt.HOLD_STILL
    return None


class KioskSession:
    """One person's capture: feed frames until `step` is DONE, then read `capture`."""

    def __init__(
        self,
        pipeline: FacePipeline,
        prompter: Callable[[str], None],
        settings: KioskSettings | None = None,
        challenge: HeadTurnChallenge | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings or KioskSettings()
        self._prompter = prompter
        self._challenge = challenge or HeadTurnChallenge.random(
            pipeline.detector, settings=self.settings.liveness
        )
        self.step = KioskStep.POSITIONING
        self.prompts: list[str] = []
        self._steady: list[tuple[Frame, Detection, Quality]] = []
        self._started: float | None = None
        self._chosen: tuple[Frame, Detection, Quality] | None = None
        self._capture: KioskCapture | None = None

    def _say(self, text: str) -> None:
        if not self.prompts or self.prompts[-1] != text:
            self.prompts.append(text)
            self._prompter(text)

    def feed(self, frame: Frame) -> KioskStep:
        """One camera frame; raises `LivenessFailed` or `CaptureTimedOut` when the session cannot succeed."""
        if self.step is KioskStep.DONE:
            return self.step
        if self._started is None:
            self._started = frame.timestamp
        elif frame.timestamp - self._started > self.settings.time_limit_s:
            raise CaptureTimedOut(
                f"no accepted capture within {self.settings.time_limit_s:g} s (step: {self.step.value};"
                f" last prompt: {self.prompts[-1] if self.prompts else 'none'})"
            )
        detections = self.pipeline.detector.detect(frame.image)
        if self.step is KioskStep.POSITIONING:
            self._position(frame, detections)
        else:
            self._turn(frame, detections)
        return self.step

    def _position(self, frame: Frame, detections: list[Detection]) -> None:
        if not detections:
            self._steady.clear()
            self._say(Prompt.STAND_IN_FRONT)
            return
        sides = sorted((min(d.width, d.height), i) for i, d in enumerate(detections))
        largest = detections[sides[-1][1]]
        if len(sides) > 1 and sides[-2][0] >= self.settings.other_face_ratio * sides[-1][0]:
            self._steady.clear()
            self._say(Prompt.ONE_PERSON)
            return
        quality = assess(frame.image, largest, self.settings.quality)
        problem = gate_prompt(quality, self.settings)
        if problem is not None:
            self._steady.clear()
            self._say(problem)
            return
        self._steady.append((frame, largest, quality))
        if len(self._steady) < self.settings.steady_frames:
            return
        self._chosen = max(self._steady, key=lambda item: item[2].overall)
        self.step = KioskStep.CHALLENGE
        log.info("kiosk capture accepted at %.2f s (quality %.2f)", frame.timestamp, self._chosen[2].overall)
        self._say(Prompt.CAPTURED)
        self._say(self._challenge.prompt)
        # The last steady frame starts the challenge, so the face is followed from the capture on.
        self._challenge.observe(frame.timestamp, frame.image, [largest])

    def _turn(self, frame: Frame, detections: list[Detection]) -> None:
        self._challenge.observe(frame.timestamp, frame.image, detections)  # raises LivenessFailed
        if self._challenge.state is not ChallengeState.PASSED:
            return
        evidence = self._challenge.result()
        assert self._chosen is not None
        chosen_frame, detection, quality = self._chosen
        face = self.pipeline.embed_detections(chosen_frame.image, [detection])[0]
        self._capture = KioskCapture(
            embedding=np.asarray(face.embedding, dtype=np.float32),
            quality=quality,
            frame_time=chosen_frame.timestamp,
            liveness=evidence,
        )
        self.step = KioskStep.DONE
        self._say(Prompt.DONE)

    @property
    def capture(self) -> KioskCapture:
        if self._capture is None:
            raise CaptureTimedOut(f"the kiosk session has not finished (step: {self.step.value})")
        return self._capture


def _probe(capture: KioskCapture) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=capture.embedding.tolist()))


def _call_failed(error: grpc.RpcError, what: str) -> Exception:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ServerUnreachable(f"{what}: the matching server cannot be reached ({details})")
    return error


def verify(
    stub: pb_grpc.MatchingServiceStub,
    gallery_id: str,
    reference_id: str,
    capture: KioskCapture,
    timeout_s: float,
) -> pb.VerifyResponse:
    """The checkpoint flow: is the person in front of the kiosk the holder of `reference_id`?"""
    request = pb.VerifyRequest(gallery_id=gallery_id, reference_id=reference_id, probe=_probe(capture))
    try:
        response: pb.VerifyResponse = stub.Verify(request, timeout=timeout_s)
    except grpc.RpcError as error:
        raise _call_failed(error, "verify") from None
    return response


def identify(
    stub: pb_grpc.MatchingServiceStub,
    gallery_id: str,
    capture: KioskCapture,
    timeout_s: float,
    top_k: int = 5,
) -> pb.IdentifyResponse:
    request = pb.IdentifyRequest(gallery_id=gallery_id, probe=_probe(capture), top_k=top_k)
    try:
        response: pb.IdentifyResponse = stub.Identify(request, timeout=timeout_s)
    except grpc.RpcError as error:
        raise _call_failed(error, "identify") from None
    return response
