"""CaptureService: how good a desk capture is, scored as the kiosk scores its frames, before any search.

The officer desk's webcam sends one frame; the console asks this before searching it, and shows the
person the kiosk's prompt for the first thing to fix (come closer, look at the camera, more light,
hold still, one person at a time), so a poor capture is retaken rather than searched. The frame is
decoded within the server's decode budget (as a probe is), its faces detected by the server's
pipeline and the largest scored by safepassage/camera_edge/quality.py with the kiosk's gate
(safepassage/camera_edge/kiosk.py): the same rules at the desk, at the kiosk and on the edge.
Nothing is searched or kept. The dlib backend has no five-point detector: FAILED_PRECONDITION.
"""

from __future__ import annotations

import grpc

from safepassage import face as faces
from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.camera_edge.kiosk import KioskSettings, Prompt, gate_prompt
from safepassage.camera_edge.quality import assess
from safepassage.core.errors import FailedPrecondition
from safepassage.server.decode_budget import DecodeBudget

__all__ = ["CaptureServicer"]

_PROMPTS = {
    Prompt.STAND_IN_FRONT: cpb.STAND_IN_FRONT,
    Prompt.ONE_PERSON: cpb.ONE_PERSON,
    Prompt.COME_CLOSER: cpb.COME_CLOSER,
    Prompt.LOOK_AT_CAMERA: cpb.LOOK_AT_CAMERA,
    Prompt.MORE_LIGHT: cpb.MORE_LIGHT,
    Prompt.HOLD_STILL: cpb.HOLD_STILL,
}


class CaptureServicer(cpb_grpc.CaptureServiceServicer):
    def __init__(
        self,
        embedder: faces.Embedder,
        limits: faces.ImageLimits,
        budget: DecodeBudget,
        settings: KioskSettings | None = None,
    ) -> None:
        self._embedder = embedder
        self._limits = limits
        self._budget = budget
        self._settings = settings or KioskSettings()

    def AssessCapture(
        self, request: cpb.AssessCaptureRequest, context: grpc.ServicerContext
    ) -> cpb.CaptureAssessment:
        pipeline = getattr(self._embedder, "pipeline", None)
        if pipeline is None:
            raise FailedPrecondition("capture quality needs the ONNX face pipeline (faces.backend = onnx)")
        header = faces.read_header(request.image, self._limits)
        with self._budget.reserve(header.decode_bytes):
            image = faces.decode_image(request.image, self._limits)
            detections = pipeline.detector.detect(image)
            if not detections:
                return cpb.CaptureAssessment(faces=0, prompt=cpb.STAND_IN_FRONT)
            sides = sorted((min(d.width, d.height), i) for i, d in enumerate(detections))
            largest = detections[sides[-1][1]]
            quality = assess(image, largest, self._settings.quality)
            del image
        prompt = gate_prompt(quality, self._settings)
        if len(sides) > 1 and sides[-2][0] >= self._settings.other_face_ratio * sides[-1][0]:
            prompt = Prompt.ONE_PERSON  # as the kiosk: two people in the frame, whoever is best
        return cpb.CaptureAssessment(
            faces=len(detections),
            size=quality.size,
            sharpness=quality.sharpness,
            pose=quality.pose,
            lighting=quality.lighting,
            confidence=quality.confidence,
            overall=quality.overall,
            prompt=_PROMPTS[prompt] if prompt is not None else cpb.CAPTURE_PROMPT_NONE,
        )
