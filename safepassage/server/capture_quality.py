"""CaptureService: how good a desk capture is, scored as the kiosk scores its frames, before any search.

The officer desk's webcam sends one frame; the console asks this before searching it, and shows the
person the kiosk's prompt for the first thing to fix (come closer, look at the camera, more light,
hold still, one person at a time), so a poor capture is retaken rather than searched. The frame is
decoded within the server's decode budget (as a probe is), its faces detected by the server's
pipeline and the largest scored by safepassage/camera_edge/quality.py with the kiosk's gate
(safepassage/camera_edge/kiosk.py): the same rules at the desk, at the kiosk and on the edge.
Nothing is searched or kept. The dlib backend has no five-point detector: FAILED_PRECONDITION.

StartLiveness and CheckLiveness run the kiosk's head-turn challenge on frames the caller recorded
(head_turn_check.py) for callers that cannot sign a capture statement themselves (a browser behind
the console); the challenge and the statement a pass earns are liveness_tokens.py's, bound to the
caller. Nothing of the frames is kept: the pass answers the frontal frame back with the statement.
"""

from __future__ import annotations

import secrets

import grpc

from safepassage import face as faces
from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.camera_edge.kiosk import KioskSettings, Prompt, gate_prompt
from safepassage.camera_edge.liveness import LivenessCheck, TurnDirection
from safepassage.camera_edge.quality import assess
from safepassage.core.errors import FailedPrecondition
from safepassage.server.decode_budget import DecodeBudget
from safepassage.server.head_turn_check import HeadTurnCheck, RecordedFrame
from safepassage.server.identity import current_caller
from safepassage.server.liveness_tokens import LivenessTokens

__all__ = ["CaptureServicer"]

_PROMPTS = {
    Prompt.STAND_IN_FRONT: cpb.STAND_IN_FRONT,
    Prompt.ONE_PERSON: cpb.ONE_PERSON,
    Prompt.COME_CLOSER: cpb.COME_CLOSER,
    Prompt.LOOK_AT_CAMERA: cpb.LOOK_AT_CAMERA,
    Prompt.MORE_LIGHT: cpb.MORE_LIGHT,
    Prompt.HOLD_STILL: cpb.HOLD_STILL,
}

_DIRECTIONS = {TurnDirection.LEFT: cpb.TURN_LEFT, TurnDirection.RIGHT: cpb.TURN_RIGHT}
_CHECKS = {
    LivenessCheck.NO_FRONTAL_FACE: cpb.NO_FRONTAL_FACE,
    LivenessCheck.NO_TURN: cpb.NO_TURN,
    LivenessCheck.PLANAR_MOTION: cpb.PLANAR_MOTION,
    LivenessCheck.WRONG_DIRECTION: cpb.WRONG_DIRECTION,
    LivenessCheck.FACE_LOST: cpb.FACE_LOST,
    LivenessCheck.FACE_JUMPED: cpb.FACE_JUMPED,
}


class CaptureServicer(cpb_grpc.CaptureServiceServicer):
    def __init__(
        self,
        embedder: faces.Embedder,
        limits: faces.ImageLimits,
        budget: DecodeBudget,
        tokens: LivenessTokens,
        settings: KioskSettings | None = None,
    ) -> None:
        self._embedder = embedder
        self._limits = limits
        self._budget = budget
        self._settings = settings or KioskSettings()
        self._tokens = tokens
        self._head_turn = HeadTurnCheck(embedder, limits, budget)

    def StartLiveness(
        self, request: cpb.StartLivenessRequest, context: grpc.ServicerContext
    ) -> cpb.LivenessChallenge:
        self._head_turn.available()
        direction = secrets.choice(list(TurnDirection))  # a replayed turn guesses the side one time in two
        return cpb.LivenessChallenge(
            challenge=self._tokens.issue_challenge(current_caller().label, direction),
            direction=_DIRECTIONS[direction],
            max_frames=self._head_turn.max_frames,
            max_duration_ms=round(self._head_turn.settings.time_limit_s * 1000),
            expires_in_s=round(self._tokens.challenge_ttl_s),
        )

    def CheckLiveness(
        self, request: cpb.CheckLivenessRequest, context: grpc.ServicerContext
    ) -> cpb.LivenessResult:
        self._head_turn.available()
        caller = current_caller().label
        challenge = self._tokens.open_challenge(request.challenge, caller)  # spent, whatever follows
        frames = [RecordedFrame(frame.image, frame.at_ms) for frame in request.frames]
        outcome = self._head_turn.run(challenge.direction, frames, self._tokens.elapsed_since(challenge))
        result = cpb.LivenessResult(
            passed=outcome.passed,
            peak_parallax=outcome.peak_parallax,
            peak_turn=outcome.peak_turn,
            frames=outcome.frames,
        )
        if outcome.failed_check is not None:
            result.failed_check = _CHECKS[outcome.failed_check]
            return result
        assert outcome.reference is not None
        image = frames[outcome.reference].image
        result.image = image
        result.statement = self._tokens.issue_statement(caller, image)
        result.statement_valid_s = round(self._tokens.statement_ttl_s)
        return result

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
