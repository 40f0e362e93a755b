"""CCTV hit review: the queue of kept hits per gallery and camera, one hit, and the four-eyes decision.

GET  /review                        the queue (ListKeptHits) of the gallery and camera asked for:
                                    time kept and left before the purge, the camera's authorisation,
                                    candidate, score, and the decisions so far
GET  /review/{gallery}/{probe_id}   one hit: candidate, score, threshold, the candidate's reference
                                    image where the gallery keeps one (GetReferenceImage; otherwise the
                                    page says so), and the confirm / dismiss form
POST /review/{gallery}/{probe_id}   ConfirmMatch or DismissMatch as the person; the page says where the
                                    hit stands now, in plain words

Offered to roles that may ListKeptHits (who may ConfirmMatch: officers). Every decision is the
service's: two different people must confirm, the same person twice is refused, a dismissal erases
the probe at once; this module only shows the states and relays the refusals. Every POST needs the
page's form token.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from typing import Any

from aiohttp import web

from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete, NothingThere
from safepassage.console.review_gateway import HitState, KeptHit, ReviewAction, ReviewGateway
from safepassage.console.upload_form import read_form

__all__ = ["STATES", "HitReviewPages"]

_GALLERY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_CAMERA_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_FORM_BYTES = 64 * 1024

# Where a hit stands, in plain words (each a catalogue message).
STATES = {
    HitState.AWAITING_REVIEW: N_("Awaiting a first review: nobody has confirmed this hit yet."),
    HitState.AWAITING_SECOND_REVIEW: N_(
        "Confirmed by one reviewer. A second, different person must confirm it before it counts as a match."
    ),
    HitState.CONFIRMED: N_(
        "Confirmed by two different reviewers: the match is on record and kept as evidence."
    ),
    HitState.DISMISSED: N_("Dismissed: the camera's image of this face has been erased."),
}
SHORT_STATES = {
    HitState.AWAITING_REVIEW: N_("awaiting a first review"),
    HitState.AWAITING_SECOND_REVIEW: N_("awaiting a second reviewer"),
    HitState.CONFIRMED: N_("confirmed by two reviewers"),
    HitState.DISMISSED: N_("dismissed and erased"),
}
ACTIONS = {ReviewAction.CONFIRM: N_("confirmed"), ReviewAction.DISMISS: N_("dismissed")}


def utc_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def minutes_left(until: float | None) -> int | None:
    return None if until is None else max(0, int((until - time.time()) // 60))


def _gallery(value: str) -> str:
    if not _GALLERY_ID.fullmatch(value):
        raise NothingThere("no such gallery")
    return value


def _probe_id(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise NothingThere("no such kept hit")
    return int(value)


class HitReviewPages:
    def __init__(self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens) -> None:
        self._gateway = gateway
        self._review = ReviewGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens

    def _page(self, template: str, request: web.Request, **context: Any) -> web.Response:
        return self._renderer.page(
            template,
            request[PERSON],
            current="review",
            utc=utc_text,
            minutes_left=minutes_left,
            states=STATES,
            short_states=SHORT_STATES,
            actions=ACTIONS,
            **context,
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/review", self.queue),
            web.get("/review/{gallery}/{probe_id}", self.hit),
            web.post("/review/{gallery}/{probe_id}", self.decide),
        ]

    async def _person(self, request: web.Request, certificate: bytes) -> str:
        """Who the service takes the person to be; their reviewer label ("role:client id")."""
        person = await identify(request, self._gateway, certificate, "review")
        return f"{person.role}:{person.client_id}"

    async def queue(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate)
        gallery = request.query.get("gallery", "")
        camera = request.query.get("camera", "")
        if gallery and not _GALLERY_ID.fullmatch(gallery):
            raise FormIncomplete("the gallery is not a gallery id")
        if camera and not _CAMERA_ID.fullmatch(camera):
            raise FormIncomplete("the camera is not a camera id")
        queue = await asyncio.to_thread(self._review.queue, certificate, gallery, camera) if gallery else None
        return self._page("review.html", request, gallery=gallery, camera=camera, queue=queue)

    async def hit(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        reviewer = await self._person(request, certificate)
        gallery = _gallery(request.match_info["gallery"])
        probe_id = _probe_id(request.match_info["probe_id"])
        queue, hit = await asyncio.to_thread(self._review.hit, certificate, gallery, probe_id)
        reference = await asyncio.to_thread(
            self._review.reference_image, certificate, gallery, hit.reference_id
        )
        return self._hit_page(request, certificate, reviewer, queue.metric, hit, gallery, reference)

    def _hit_page(
        self,
        request: web.Request,
        certificate: bytes,
        reviewer: str,
        metric: str,
        hit: KeptHit,
        gallery: str,
        reference: str | None,
    ) -> web.StreamResponse:
        return self._page(
            "review_hit.html",
            request,
            form_token=self._tokens.issue(certificate),
            gallery=gallery,
            metric=metric,
            hit=hit,
            reviewed_already=hit.reviewed_by(reviewer),
            reference=reference,
            decidable=hit.state in (HitState.AWAITING_REVIEW, HitState.AWAITING_SECOND_REVIEW),
        )

    async def decide(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, _FORM_BYTES, self._tokens, certificate)
        gallery = _gallery(request.match_info["gallery"])
        probe_id = _probe_id(request.match_info["probe_id"])
        try:
            action = ReviewAction(form.text("action"))
        except ValueError:
            raise FormIncomplete("choose confirm or dismiss") from None
        # The service decides (four eyes, the matrix); a refusal shows as its page, saying why.
        state = await asyncio.to_thread(self._review.decide, certificate, gallery, probe_id, action)
        await self._person(request, certificate)
        return self._page(
            "review_done.html",
            request,
            gallery=gallery,
            probe_id=probe_id,
            action=action,
            state=state,
        )
