"""The head turn a browser records for the service's liveness check: the console's side of it.

A page that needs a live face (the kiosk's card + face + PIN, the caseworker's webcam enrolment) runs
static/liveness.js. When the person acts, the script asks the page's challenge endpoint for a
challenge (a POST with the form's token: StartLiveness as the person; JSON: the sealed challenge,
the prompt in the page's language, the limits), shows the prompt, records frames from the camera by
canvas (unmirrored, as the sensor sees them) with their times, and sends them with the form
(multipart: the challenge, one file part per frame, their times). The page's handler calls
`live_capture`: CheckLiveness as the same person, then, in the same request, its action with the
frame that passed and the service's statement over it. A check that fails raises HeadTurnFailed with
a plain prompt for what to do; the handler renders its form again with it, and nothing is changed.

A form without a recording is sent on without a live face: the service, not the page, then refuses
what needs one (a card with a PIN proves nothing alone). What the check proves, and what it cannot:
docs/console.md ("Head-turn liveness").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from safepassage.console.gateway import ServiceGateway
from safepassage.console.liveness_gateway import LiveCapture, LivenessGateway, RecordedFrame
from safepassage.console.refusals import N_, ConsoleError, FormIncomplete, NotPossibleNow
from safepassage.console.upload_form import SubmittedForm
from safepassage.core.errors import InvalidInput

__all__ = [
    "FRAME_FIELD",
    "RETRY_PROMPTS",
    "TURN_PROMPTS",
    "HeadTurn",
    "HeadTurnFailed",
    "recorded",
]

SCRIPT = Path(__file__).resolve().parent / "static" / "liveness.js"
# The form's fields the script fills: the challenge (base64), the frames' times (ms, comma-separated)
# and one file part per frame, in order.
CHALLENGE_FIELD = "head_turn_challenge"
TIMES_FIELD = "head_turn_times"
FRAME_FIELD = "head_turn_frame"
_MAX_AT_MS = 2**32 - 1

# What the person is asked to do: their own side (the camera's image is not mirrored).
TURN_PROMPTS: Mapping[str, str] = {
    "left": N_("Look at the camera, then turn your head slowly to your left"),
    "right": N_("Look at the camera, then turn your head slowly to your right"),
}
# What to do after each check that failed (the service's LivenessCheck names).
RETRY_PROMPTS: Mapping[str, str] = {
    "NO_FRONTAL_FACE": N_("Look straight at the camera first, then turn your head."),
    "NO_TURN": N_("Turn your head further to the side you are asked, slowly, and hold it there a moment."),
    "PLANAR_MOTION": N_("Turn your head itself: a photo or a screen moved before the camera does not count."),
    "WRONG_DIRECTION": N_("You turned to the other side. Turn to the side the screen asks for."),
    "FACE_LOST": N_("Keep your face in view of the camera while you turn."),
    "FACE_JUMPED": N_("One person at a time: keep your own face in view while you turn."),
}


class HeadTurnFailed(ConsoleError, InvalidInput):
    """The service's head-turn check did not pass; `prompt` says what to do (a catalogue message)."""

    def __init__(self, check: str) -> None:
        super().__init__(f"the head-turn check did not pass ({check})")
        self.check = check
        self.prompt = RETRY_PROMPTS.get(check, RETRY_PROMPTS["NO_TURN"])


def recorded(form: SubmittedForm) -> tuple[bytes, tuple[RecordedFrame, ...]] | None:
    """The challenge and the frames the form carries; None when it carries no head turn at all."""
    frames = [data for name, _, data in form.uploads if name == FRAME_FIELD]
    token, times_text = form.text(CHALLENGE_FIELD), form.text(TIMES_FIELD)
    if not (token or frames or times_text):
        return None
    try:
        challenge = base64.b64decode(token, validate=True)
        times = [int(text) for text in times_text.split(",")] if times_text else []
    except (ValueError, binascii.Error):
        raise FormIncomplete("the head turn's recording is malformed: turn again") from None
    if not challenge or not frames or len(times) != len(frames):
        raise FormIncomplete("the head turn's recording is incomplete: turn again")
    if not all(0 <= at <= _MAX_AT_MS for at in times):
        raise FormIncomplete("the head turn's frame times are out of range: turn again")
    return challenge, tuple(RecordedFrame(image, at) for image, at in zip(frames, times, strict=True))


class HeadTurn:
    """The challenge endpoint's answer, the script, and the check a page's handler runs first."""

    def __init__(self, gateway: ServiceGateway) -> None:
        self._liveness = LivenessGateway(gateway)
        self._script = SCRIPT.read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/static/liveness.js", self.script)]

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, content_type="text/javascript", charset="utf-8")

    async def challenge(self, certificate: bytes, gettext: Callable[[str], str]) -> web.Response:
        """A new challenge for the person, as the script reads it; the prompt in the page's language."""
        challenge = await asyncio.to_thread(self._liveness.start, certificate)
        if challenge.direction not in TURN_PROMPTS:
            raise NotPossibleNow("the service drew no side to turn to")
        return web.json_response(
            {
                "challenge": base64.b64encode(challenge.token).decode("ascii"),
                "direction": challenge.direction,
                "prompt": gettext(TURN_PROMPTS[challenge.direction]),
                "max_frames": challenge.max_frames,
                "max_duration_ms": challenge.max_duration_ms,
            }
        )

    async def live_capture(self, certificate: bytes, form: SubmittedForm) -> LiveCapture | None:
        """The live face the form's head turn earned; None without one; HeadTurnFailed if it did not pass."""
        recording = recorded(form)
        if recording is None:
            return None
        answer = await asyncio.to_thread(self._liveness.check, certificate, *recording)
        if answer.capture is None:
            raise HeadTurnFailed(answer.failed_check)
        return answer.capture
