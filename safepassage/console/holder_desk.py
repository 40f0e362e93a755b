"""The holder check at the officer desk: a protected record's holder proves who they are at the border.

GET  /desk/holder            the form: the card's code (a QR scanner types into the field, or paste
                             it), the PIN for the traveller to type if they wish (a password field,
                             never rendered back), and the head-turn panel (static/liveness.js)
POST /desk/holder/head-turn  a head-turn challenge for the page's script (JSON; head_turn.py)
POST /desk/holder/verify     CheckLiveness as the officer, then VerifyHolder as the officer with the
                             card, the frame the turn passed on and the service's statement over it,
                             and the PIN; the answer page: MATCH with the minimal view (names, the
                             record's face photo, each document's kind, country, expiry and who holds
                             it now, the NGO to call), and with the PIN the whole record

A migrant worker whose papers were taken proves who they are with the card their NGO gave them and
their face; a document "withheld by an employer" (or taken) is shown as a warning the officer must
notice: it is the trafficking signal. The record policy decides everything
(safepassage/enrolment/record_policy.py): a holder who withdrew border verification, a retired
card, a face that does not match, a wrong or locked PIN are the service's refusals, shown as a page
in words, with nothing of the record. A duress PIN is answered exactly as the PIN (the service
raises its referral silently): the page cannot differ, it is made from the answer alone. A turn
that did not pass renders the form again with a prompt, and nothing is asked of the record.

Offered to officers (the desk's roles) whose role may VerifyHolder and run the head-turn check
(pages.py); the kiosk, which may VerifyHolder too, has its own mode and is refused here. The PIN is
read from the form for the one call and never rendered, kept or logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from safepassage.console.caseworker_enrolment import DOCUMENT_KINDS, ENTITLEMENT_KINDS, POSSESSION
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.head_turn import HeadTurn, HeadTurnFailed
from safepassage.console.holder_gateway import HolderCheck, HolderGateway, data_url
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete, refusal_page
from safepassage.console.upload_form import SubmittedForm, read_form
from safepassage.core.errors import PermissionDenied, SafePassageError

__all__ = ["NOTHING_SHOWN", "POSSESSION_WARNINGS", "HolderDesk", "refused", "shown"]

PAGE = "holder"
# The challenge's request carries the form token alone.
_CHALLENGE_FORM_BYTES = 64 * 1024
# Who holds a document, when it is not the holder: what the officer must notice (a catalogue message).
POSSESSION_WARNINGS: Mapping[str, str] = {
    "withheld_by_employer": N_(
        "Warning: withheld by an employer or agent. Papers kept by an employer are a sign of"
        " trafficking or forced labour: call the NGO below."
    ),
    "lost_or_stolen": N_("Warning: lost or taken. Ask the traveller what happened, and call the NGO below."),
}
NOTHING_SHOWN = N_(
    "No record is shown: the card, the face or the PIN did not prove the holder, or the holder does"
    " not allow border checks with their card. Nothing of the record was disclosed."
)


class HolderDesk:
    def __init__(
        self,
        gateway: ServiceGateway,
        renderer: Renderer,
        tokens: FormTokens,
        head_turn: HeadTurn,
        max_upload: int,
    ) -> None:
        self._gateway = gateway
        self._holders = HolderGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens
        self._head_turn = head_turn
        # The form carries the head turn's frames (a few MB); the console's upload limit bounds it.
        self._max_upload = max_upload

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/desk/holder", self.form),
            web.post("/desk/holder/head-turn", self.challenge),
            web.post("/desk/holder/verify", self.verify),
        ]

    async def _officer(self, request: web.Request, certificate: bytes) -> None:
        """The person, refused unless the page is offered to their role (the kiosk has its own mode)."""
        await identify(request, self._gateway, certificate, PAGE)

    async def _posted(self, request: web.Request, max_bytes: int) -> tuple[bytes, SubmittedForm]:
        certificate = peer_certificate(request)
        form = await read_form(request, max_bytes, self._tokens, certificate)
        await self._officer(request, certificate)
        return certificate, form

    def _form_page(
        self, request: web.Request, certificate: bytes, card: str = "", retry: str = "", status: int = 200
    ) -> web.Response:
        # The card's code is kept for another turn; the PIN never is: the traveller types it again.
        return self._renderer.page(
            "desk_holder.html",
            request[PERSON],
            current=PAGE,
            status=status,
            form_token=self._tokens.issue(certificate),
            card=card,
            retry=retry,
        )

    async def form(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._officer(request, certificate)
        return self._form_page(request, certificate)

    async def challenge(self, request: web.Request) -> web.StreamResponse:
        certificate, _ = await self._posted(request, _CHALLENGE_FORM_BYTES)
        # The prompt in the page's language (the request's).
        return await self._head_turn.challenge(certificate, self._renderer.text)

    async def verify(self, request: web.Request) -> web.StreamResponse:
        certificate, form = await self._posted(request, self._max_upload)
        # A scanner may end the code with a line break; base45 itself may hold spaces, kept as they are.
        card = form.fields.get("credential", "").strip("\r\n\t ")
        if not card:
            raise FormIncomplete("the card's code is missing: scan the card's QR code or type its text")
        pin = form.fields.get("pin", "")
        try:
            live = await self._head_turn.live_capture(certificate, form)
            checked = await asyncio.to_thread(self._holders.verify_holder, certificate, card, live, pin)
        except HeadTurnFailed as failed:
            # Nothing was asked of the record: the form again, with what to do.
            return self._form_page(request, certificate, card, retry=failed.prompt, status=422)
        except SafePassageError as refused:
            return self._refused(request, refused)
        return self._renderer.page("desk_holder_answer.html", request[PERSON], current=PAGE, **shown(checked))

    def _refused(self, request: web.Request, error: SafePassageError) -> web.Response:
        status, context = refused(error)
        return self._renderer.page(
            "desk_holder_refused.html", request[PERSON], current=PAGE, status=status, **context
        )


def refused(error: SafePassageError) -> tuple[int, dict[str, str]]:
    """The service's refusal, in words: its status, and the refusal page's texts and the service's message."""
    status, headline, meaning = refusal_page(error)
    if isinstance(error, PermissionDenied):
        # The record policy's refusal (face, PIN, card, consent): the matrix's words would mislead.
        headline = meaning = ""
    return status, {
        "headline": headline,
        "meaning": meaning,
        "nothing_shown": NOTHING_SHOWN,
        "detail": str(error),
    }


def shown(checked: HolderCheck) -> dict[str, Any]:
    """What the answer page is given: the answer, its images inside the page, and the words for codes."""
    record = checked.record
    return {
        "check": checked,
        "photo": data_url(checked.face_photo),
        "record": record,
        "document_photos": [data_url(d.photo) for d in record.documents] if record else [],
        "warned": any(d.possession in POSSESSION_WARNINGS for d in checked.documents),
        "document_kinds": DOCUMENT_KINDS,
        "entitlement_kinds": ENTITLEMENT_KINDS,
        "possession": POSSESSION,
        "warnings": POSSESSION_WARNINGS,
    }
