"""Webcam capture on the officer desk: a frame from the browser's camera, checked as the kiosk checks one.

GET  /desk/capture      the page: the camera's live view, the comparison's fields, a "take the photo"
                        button; a same-origin static script (static/capture.js) runs the camera
                        (getUserMedia) and puts the frame it grabs into the form's file input; without
                        the camera or a script, the officer can still choose a photo there
POST /desk/capture      AssessCapture first (the service scores the frame with the kiosk's quality
                        rules, safepassage/camera_edge/quality.py): a frame to retake comes back with
                        the kiosk's prompt (come closer, look at the camera, ...) and nothing is
                        searched; a good one is searched as the desk's upload is (officer_desk.py)

This page alone allows a script and the camera (pages.PAGE_HEADERS): script-src 'self' and
camera=(self), only here, so that every other page keeps no script at all. The frame lives in
memory for the request, as the desk's upload does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from safepassage.console.capture_gateway import CaptureGateway
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.officer_desk import OfficerDesk
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.upload_form import read_form

__all__ = ["PROMPTS", "DeskCapture"]

SCRIPT = Path(__file__).resolve().parent / "static" / "capture.js"
# The kiosk's prompts (safepassage/camera_edge/kiosk.py), in the catalogue.
PROMPTS = {
    "STAND_IN_FRONT": N_("Please stand in front of the camera"),
    "ONE_PERSON": N_("One person at a time, please"),
    "COME_CLOSER": N_("Please come a little closer"),
    "LOOK_AT_CAMERA": N_("Please look straight at the camera"),
    "MORE_LIGHT": N_("Please turn towards the light"),
    "HOLD_STILL": N_("Please hold still"),
}


class DeskCapture:
    def __init__(
        self,
        gateway: ServiceGateway,
        renderer: Renderer,
        tokens: FormTokens,
        desk: OfficerDesk,
        max_upload: int,
    ) -> None:
        self._gateway = gateway
        self._capture = CaptureGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens
        self._desk = desk
        self._max_upload = max_upload
        self._script = SCRIPT.read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/desk/capture", self.show),
            web.post("/desk/capture", self.take),
            web.get("/static/capture.js", self.script),
        ]

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, content_type="text/javascript", charset="utf-8")

    async def _page(
        self, request: web.Request, certificate: bytes, prompt: str = "", **fields: str
    ) -> web.StreamResponse:
        return self._renderer.page(
            "capture.html",
            request[PERSON],
            current="desk",
            form_token=self._tokens.issue(certificate),
            prompt=PROMPTS.get(prompt, ""),
            gallery=fields.get("gallery", ""),
            mode=fields.get("mode", "identify"),
            reference_id=fields.get("reference_id", ""),
        )

    async def show(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await identify(request, self._gateway, certificate, "desk")
        return await self._page(request, certificate)

    async def take(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        image = form.files.get("probe", b"")
        if not image:
            raise FormIncomplete("no photo was taken")
        quality = await asyncio.to_thread(self._capture.assess, certificate, image)
        if quality.prompt:
            # Retake: nothing is searched; the officer keeps the fields they filled in.
            await identify(request, self._gateway, certificate)
            return await self._page(
                request,
                certificate,
                quality.prompt,
                gallery=form.text("gallery"),
                mode=form.text("mode"),
                reference_id=form.text("reference_id"),
            )
        return await self._desk.answer(request, certificate, form)
