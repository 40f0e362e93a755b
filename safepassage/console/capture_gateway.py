"""CaptureService.AssessCapture for the desk's webcam: the person's own call (gateway.py), officers only."""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = ["CaptureGateway", "CaptureQuality"]


@dataclass(frozen=True)
class CaptureQuality:
    faces: int
    overall: float
    prompt: str  # "" : good enough; else STAND_IN_FRONT, ONE_PERSON, COME_CLOSER, LOOK_AT_CAMERA, ...


class CaptureGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._capture = cpb_grpc.CaptureServiceStub(gateway.channel)

    def assess(self, person: bytes, image: bytes) -> CaptureQuality:
        answer = self._gateway.call(
            self._capture.AssessCapture, cpb.AssessCaptureRequest(image=image), person
        )
        prompt = "" if answer.prompt == cpb.CAPTURE_PROMPT_NONE else cpb.CapturePrompt.Name(answer.prompt)
        return CaptureQuality(answer.faces, answer.overall, prompt)
