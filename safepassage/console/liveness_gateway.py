"""CaptureService's head-turn liveness for the console's pages: the person's own calls (gateway.py).

StartLiveness draws the side to turn to and seals a challenge bound to the caller (the person or
kiosk whose certificate the console forwards); CheckLiveness runs the head-turn check on the frames
the browser recorded and, when it passes, answers the frontal frame with the service's statement
over it: a live capture that the same caller may give once, shortly after, to a holder proof or an
enrolment. A failed check is an answer (which check failed), not an error. Protobuf stops here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = ["Challenge", "LiveCapture", "LivenessAnswer", "LivenessGateway", "RecordedFrame"]

_DIRECTIONS = {cpb.TURN_LEFT: "left", cpb.TURN_RIGHT: "right"}


@dataclass(frozen=True)
class Challenge:
    token: bytes = field(repr=False)  # opaque, sealed by the service: given back with the frames
    direction: str  # "left" or "right": the person's own side
    max_frames: int
    max_duration_ms: int
    expires_in_s: int


@dataclass(frozen=True)
class RecordedFrame:
    image: bytes = field(repr=False)  # JPEG, as the camera saw it (unmirrored)
    at_ms: int  # since the first frame


@dataclass(frozen=True)
class LiveCapture:
    """A frame the service saw turn, and its statement over it: a holder proof's or enrolment's live face."""

    image: bytes = field(repr=False)
    statement: bytes = field(repr=False)


@dataclass(frozen=True)
class LivenessAnswer:
    passed: bool
    failed_check: str  # "" when passed; else NO_FRONTAL_FACE, NO_TURN, PLANAR_MOTION, WRONG_DIRECTION, ...
    capture: LiveCapture | None  # when passed
    frames: int  # frames the check looked at


class LivenessGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._capture = cpb_grpc.CaptureServiceStub(gateway.channel)

    def start(self, person: bytes) -> Challenge:
        answer = self._gateway.call(self._capture.StartLiveness, cpb.StartLivenessRequest(), person)
        return Challenge(
            answer.challenge,
            _DIRECTIONS.get(answer.direction, ""),
            answer.max_frames,
            answer.max_duration_ms,
            answer.expires_in_s,
        )

    def check(self, person: bytes, challenge: bytes, frames: Sequence[RecordedFrame]) -> LivenessAnswer:
        request = cpb.CheckLivenessRequest(
            challenge=challenge,
            frames=[cpb.LivenessFrame(image=frame.image, at_ms=frame.at_ms) for frame in frames],
        )
        answer = self._gateway.call(self._capture.CheckLiveness, request, person)
        if not answer.passed:
            failed = cpb.LivenessCheck.Name(answer.failed_check)
            return LivenessAnswer(False, failed, None, answer.frames)
        return LivenessAnswer(True, "", LiveCapture(answer.image, answer.statement), answer.frames)
