"""Oversight pages: CCTV authorisations (active and expired, every use, signing) and fishing alerts.

GET  /admin/authorisations        ListAuthorisations: what the transparency log records of each CCTV
                                  authorisation (presented by a camera, or signed on this server),
                                  and the searches made under it
POST /admin/authorisations/sign   SignAuthorisation: cameras, watchlist, legal basis, validity; the
                                  page that answers offers the signed file the cameras load
GET  /admin/fishing-alerts        ListFishingAlerts: the fishing detector's alerts

Offered to the roles the matrix lets read them (administrators and auditors). By default signing
stays off the server, with the key of an administrator's own certificate (`safepassage authorise`):
the page explains why and shows the command. A deployment that set `cctv.signing_key_file` keeps
an authority key on the server (server/cctv_authority.py); then the page offers administrators a
form, and says what that costs (docs/console.md). The service decides and logs each signature.
"""

from __future__ import annotations

import asyncio
import base64
import datetime

from aiohttp import web

from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.oversight_gateway import OversightGateway
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.upload_form import read_form

__all__ = ["OversightPages"]

RULES = {
    "volume": N_("too many searches in the window"),
    "no_match_share": N_("too many searches without a match"),
    "gallery_spread": N_("too many galleries searched"),
}


_MAX_FORM_BYTES = 64 * 1024  # ids, a legal basis and two times
SIGN = "SignAuthorisation"


class OversightPages:
    def __init__(self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens) -> None:
        self._gateway = gateway
        self._oversight = OversightGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/authorisations", self.authorisations),
            web.post("/admin/authorisations/sign", self.sign),
            web.get("/admin/fishing-alerts", self.fishing_alerts),
        ]

    async def _person_on(self, request: web.Request, certificate: bytes, page: str) -> None:
        await identify(request, self._gateway, certificate, page)

    async def authorisations(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person_on(request, certificate, "authorisations")
        listing = await asyncio.to_thread(self._oversight.authorisations, certificate)
        signs = listing.server_signs and request[PERSON].may(SIGN)
        return self._renderer.page(
            "admin_authorisations.html",
            request[PERSON],
            current="authorisations",
            active=[g for g in listing.listed if g.active],
            expired=[g for g in listing.listed if not g.active],
            complete=listing.complete,
            server_signs=listing.server_signs,
            form_token=self._tokens.issue(certificate) if signs else "",
            may_sign=signs,
        )

    async def sign(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, _MAX_FORM_BYTES, self._tokens, certificate)
        cameras = [c for c in form.required("cameras", "the cameras").replace(",", " ").split() if c]
        signed = await asyncio.to_thread(
            self._oversight.sign,
            certificate,
            form.required("gallery", "the watchlist"),
            cameras,
            form.required("legal_basis", "the legal basis"),
            _moment(form.text("not_before"), "the start of the validity")
            if form.text("not_before")
            else None,
            _moment(form.required("expires", "the end of the validity"), "the end of the validity"),
        )
        await identify(request, self._gateway, certificate)
        token_file = (signed.token + "\n").encode("ascii")
        return self._renderer.page(
            "admin_authorisation_signed.html",
            request[PERSON],
            current="authorisations",
            signed=signed,
            file_name=f"{signed.authorisation_id}.authorisation",
            file_link="data:application/octet-stream;base64," + base64.b64encode(token_file).decode("ascii"),
        )

    async def fishing_alerts(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person_on(request, certificate, "fishing")
        alerts, complete = await asyncio.to_thread(self._oversight.fishing_alerts, certificate)
        return self._renderer.page(
            "admin_fishing.html",
            request[PERSON],
            current="fishing",
            alerts=alerts,
            complete=complete,
            rules=RULES,
        )


def _moment(text: str, label: str) -> datetime.datetime:
    """A datetime-local field's value (YYYY-MM-DDTHH:MM), taken as UTC, as the form says."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise FormIncomplete(f"{label} is not a date and time (YYYY-MM-DDTHH:MM, UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment
