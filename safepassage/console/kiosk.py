"""Kiosk mode: the NGO's self-service screen, where a holder manages their own protected record.

GET  /kiosk                   the languages the catalogue folder holds, each named in its own script
GET  /kiosk/{lang}            the start: the holder gives their recovery code, or their card's code and
                              PIN and turns their head (the service's head-turn check: a live face)
POST /kiosk/{lang}/head-turn  a head-turn challenge for the page's script (JSON; head_turn.py)
POST /kiosk/{lang}/record     what the record allows (GetConsent, with the holder's proof)
POST /kiosk/{lang}/consent    withdraw or grant one scope (ChangeConsent); the signed receipt to print
POST /kiosk/{lang}/pin        a new PIN and duress PIN (ChangePin)
POST /kiosk/{lang}/card       a fresh credential to print (IssueCredential; the old one is retired)
POST /kiosk/{lang}/erase      erase the record (EraseRecord); the signed receipt and the key to check it

Offered to the kiosk role (pages.py); the kiosk's certificate reaches only these operations through
the console (authorization.CONSOLE_DEVICE_OPERATIONS). Every call carries the holder's proof, and
the service decides it with the record policy (safepassage/enrolment/record_policy.py): the
recovery code is the holder's proof; so is a card's code with the PIN and a live face that matches,
the frame the service's own head-turn check passed (head_turn.py), asked for afresh before every call
(its statement is accepted once); a card's code alone, or with a PIN and no live face, proves nothing
and changes nothing. The page shows no name, photo or document number: only the scopes.

Nothing is kept between requests: the proof travels sealed in the page's forms (kiosk_proof.py)
for the idle time and a minute; every page runs static/kiosk.js, which returns an untouched screen
to /kiosk (replacing the page in the history), and without a script a meta refresh does the same;
every response is `no-store`, and the record's pages answer POSTs, which a browser's back button
cannot show again without sending them anew (and then the sealed proof has expired).
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.head_turn import HeadTurn, HeadTurnFailed
from safepassage.console.kiosk_gateway import HolderProof, KioskGateway, RecordConsent, ScopeState
from safepassage.console.kiosk_proof import FIELD as PROOF_FIELD
from safepassage.console.kiosk_proof import SHOWN_FIELD, ProofSeal
from safepassage.console.languages import Language, RequestLanguage
from safepassage.console.languages import release as release_language
from safepassage.console.languages import use as use_language
from safepassage.console.liveness_gateway import LiveCapture
from safepassage.console.pages import Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete, FormRefused, NothingThere, refusal_page
from safepassage.console.upload_form import SubmittedForm, read_form
from safepassage.core.errors import SafePassageError

__all__ = ["HOLDER_MEANINGS", "SCOPE_NAMES", "SCOPE_TEXTS", "KioskPages", "current_scopes", "render_kiosk"]

KIOSK_START = "/kiosk"
SCRIPT = Path(__file__).resolve().parent / "static" / "kiosk.js"
# A proof's forms outlive the idle screen by this much (the holder pressing a button as it times out).
_GRACE_S = 60.0
# The scopes a holder may grant at the kiosk (store is the record itself; erasing ends it; sharing
# with an organisation is named with a caseworker of it).
GRANTABLE = ("verify_at_border", "duplicate_check")

# Each scope in plain words, and the text a holder agrees to when granting it (catalogue messages).
SCOPE_NAMES: Mapping[str, str] = {
    "store": N_("Keep my record"),
    "verify_at_border": N_("Border checks with my card"),
    "duplicate_check": N_("Check that I am not enrolled twice"),
    "share": N_("Share my record with %(organisation)s"),
}
SCOPE_TEXTS: Mapping[str, str] = {
    "store": N_("The NGO keeps my record, sealed, until I erase it."),
    "verify_at_border": N_(
        "A border officer may check, with my card and my face, that this record is mine, and see my"
        " name, my photo and whether my papers are valid. Without this I get no card."
    ),
    "duplicate_check": N_(
        "The NGO may compare my face with the other people it has enrolled, to find a second record of me."
    ),
    "share": N_("%(organisation)s may see my whole record."),
}


# What a refusal means to the holder, by its HTTP status (the console's own meanings speak to staff).
HOLDER_MEANINGS: Mapping[int, str] = {
    403: N_(
        "This cannot be done with what you gave. Check your recovery code and start again, or ask a"
        " caseworker of the NGO."
    ),
    400: N_("Something was missing or could not be used. Start again and check what you typed."),
    404: N_("There is no such page here. Start again."),
    409: N_("This cannot be done now. A caseworker of the NGO can tell you why."),
    429: N_("Too many tries. Wait a while, or ask a caseworker of the NGO."),
    503: N_("The service is not answering. Try again in a moment."),
}


def scope_name(gettext: Callable[[str], str], scope: str) -> str:
    kind, _, organisation = scope.partition(":")
    if kind not in SCOPE_NAMES:
        return scope
    return gettext(SCOPE_NAMES[kind]) % {"organisation": organisation}


def scope_text(gettext: Callable[[str], str], scope: str) -> str:
    kind, _, organisation = scope.partition(":")
    if kind not in SCOPE_TEXTS:
        return ""  # a scope this console does not know yet: its name alone
    return gettext(SCOPE_TEXTS[kind]) % {"organisation": organisation}


def current_scopes(consent: RecordConsent) -> list[ScopeState]:
    """The record's scopes (one decision each), the record's keeping first, then as the service lists them."""
    return sorted(consent.scopes, key=lambda state: state.scope != "store")


def render_kiosk(
    renderer: Renderer, template: str, language: Language | None, idle_s: float, **context: Any
) -> str:
    """A kiosk page in `language` (None: the language choice, in the request's language)."""
    chosen = renderer.language.language if language is None else language
    gettext = chosen.catalogue.gettext
    token = use_language(RequestLanguage(chosen, back=KIOSK_START))
    try:
        return renderer.render(
            template,
            kiosk_language=language,
            languages=renderer.languages.shipped,
            idle_s=int(idle_s),
            scope_name=functools.partial(scope_name, gettext),
            scope_text=functools.partial(scope_text, gettext),
            **context,
        )
    finally:
        release_language(token)


Handler = Callable[["KioskPages", web.Request, Language], Awaitable[web.StreamResponse]]


def _holder_page(handler: Handler) -> Callable[[KioskPages, web.Request], Awaitable[web.StreamResponse]]:
    """The page's language read from its path, and any refusal shown in that language."""

    @functools.wraps(handler)
    async def wrapped(self: KioskPages, request: web.Request) -> web.StreamResponse:
        language = self._language(request.match_info.get("lang", ""))
        try:
            return await handler(self, request, language)
        except SafePassageError as error:
            return self._refusal(language, error)

    return wrapped


class KioskPages:
    def __init__(
        self, gateway: ServiceGateway, renderer: Renderer, idle_s: float, head_turn: HeadTurn, max_upload: int
    ) -> None:
        self._gateway = gateway
        self._holders = KioskGateway(gateway)
        self._renderer = renderer
        self._idle_s = idle_s
        self._head_turn = head_turn
        # A form may carry a head turn's frames (a few MB); the console's upload limit bounds it.
        self._max_upload = max_upload
        self._tokens = FormTokens(idle_s + _GRACE_S)
        self._seal = ProofSeal(idle_s + _GRACE_S)
        self._script = SCRIPT.read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/kiosk", self.choose_language),
            web.get("/kiosk/{lang}", self.start),
            web.post("/kiosk/{lang}/head-turn", self.head_turn),
            web.post("/kiosk/{lang}/record", self.record),
            web.post("/kiosk/{lang}/consent", self.consent),
            web.post("/kiosk/{lang}/pin", self.pin),
            web.post("/kiosk/{lang}/card", self.card),
            web.post("/kiosk/{lang}/erase", self.erase),
            web.get("/static/kiosk.js", self.script),
        ]

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, content_type="text/javascript", charset="utf-8")

    # -- rendering --------------------------------------------------------------------------

    def _language(self, code: str) -> Language:
        """A language whose catalogue the console ships (languages.py reads the catalogue folder)."""
        language = self._renderer.languages.by_code.get(code)
        if language is None:
            raise NothingThere("the kiosk has no such language")
        return language

    def _page(
        self, template: str, language: Language | None, *, status: int = 200, **context: Any
    ) -> web.Response:
        body = render_kiosk(self._renderer, template, language, self._idle_s, **context)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def _refusal(self, language: Language, error: SafePassageError) -> web.Response:
        status, headline, _ = refusal_page(error)
        meaning = HOLDER_MEANINGS.get(status, N_("Ask a caseworker of the NGO for help."))
        return self._page(
            "kiosk_refusal.html",
            language,
            status=status,
            headline=headline,
            meaning=meaning,
            detail=str(error),
        )

    def _record_page(
        self,
        language: Language,
        certificate: bytes,
        proof: HolderProof,
        consent: RecordConsent,
        done: str = "",
        receipt: str = "",
        retry: str = "",
    ) -> web.Response:
        return self._page(
            "kiosk_record.html",
            language,
            status=422 if retry else 200,
            consent=consent,
            scopes=current_scopes(consent),
            grantable=[scope for scope in GRANTABLE if not consent.in_force(scope)],
            done=done,
            receipt=receipt,
            retry=retry,
            head_turn=proof.needs_live_face,
            **self._forms(certificate, proof, consent),
        )

    def _forms(
        self, certificate: bytes, proof: HolderProof | None = None, shown: RecordConsent | None = None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"form_token": self._tokens.issue(certificate)}
        if proof is not None:
            fields["holder_proof"] = self._seal.seal(certificate, proof)
        if shown is not None:
            fields["shown_record"] = self._seal.seal_shown(certificate, shown)
        return fields

    # -- the person and the form ------------------------------------------------------------

    async def _kiosk(self, request: web.Request) -> bytes:
        certificate = peer_certificate(request)
        await identify(request, self._gateway, certificate, "kiosk")
        return certificate

    async def _posted(self, request: web.Request) -> tuple[bytes, SubmittedForm]:
        certificate = await self._kiosk(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        return certificate, form

    def _proof(self, certificate: bytes, fields: Mapping[str, str]) -> HolderProof:
        return self._seal.open(certificate, fields.get(PROOF_FIELD))

    def _shown(self, certificate: bytes, fields: Mapping[str, str]) -> RecordConsent:
        shown = self._seal.open_shown(certificate, fields.get(SHOWN_FIELD))
        if shown is None:
            raise FormRefused("the page carries no record to show: start again")
        return shown

    async def _live(self, certificate: bytes, form: SubmittedForm) -> LiveCapture | None:
        """The fresh live face the form's head turn earned (None without one: the service decides)."""
        return await self._head_turn.live_capture(certificate, form)

    # -- pages ------------------------------------------------------------------------------

    async def choose_language(self, request: web.Request) -> web.StreamResponse:
        await self._kiosk(request)
        return self._page("kiosk_languages.html", None)

    @_holder_page
    async def start(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate = await self._kiosk(request)
        return self._page("kiosk_start.html", language, retry="", **self._forms(certificate))

    @_holder_page
    async def head_turn(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, _ = await self._posted(request)
        return await self._head_turn.challenge(certificate, language.catalogue.gettext)

    @_holder_page
    async def record(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, form = await self._posted(request)
        fields = form.fields
        if fields.get(SHOWN_FIELD):  # back from a later page: the record as last answered, no new call
            proof = self._proof(certificate, fields)
            return self._record_page(language, certificate, proof, self._shown(certificate, fields))
        if fields.get(PROOF_FIELD):  # the card and PIN given, again after a head turn that did not pass
            proof = self._proof(certificate, fields)
        else:  # what the holder typed or scanned: the recovery code, or a card's code (with the PIN)
            proof = HolderProof(
                recovery_code="".join(fields.get("recovery_code", "").split()),
                credential=fields.get("credential", "").strip(),
                pin=fields.get("pin", ""),
            )
        try:
            live = await self._live(certificate, form)
        except HeadTurnFailed as failed:
            # Nothing was asked of the record; the card and PIN ride sealed for the next turn.
            forms = self._forms(certificate, proof)
            return self._page("kiosk_start.html", language, status=422, retry=failed.prompt, **forms)
        consent = await asyncio.to_thread(self._holders.consent, certificate, proof, live)
        return self._record_page(language, certificate, proof, consent)

    @_holder_page
    async def consent(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, form = await self._posted(request)
        fields = form.fields
        proof, shown = self._proof(certificate, fields), self._shown(certificate, fields)
        scope, change = fields.get("scope", ""), fields.get("change", "")
        kind = scope.partition(":")[0]
        if kind not in SCOPE_TEXTS or kind == "store" or change not in ("grant", "withdraw"):
            raise FormIncomplete("choose a scope to grant or withdraw")
        if change == "grant" and scope not in GRANTABLE:
            raise FormIncomplete("this scope is granted with a caseworker of the organisation")
        try:
            live = await self._live(certificate, form)
        except HeadTurnFailed as failed:
            return self._record_page(language, certificate, proof, shown, retry=failed.prompt)
        text = scope_text(language.catalogue.gettext, scope)
        granted, refused = ((scope,), ()) if change == "grant" else ((), (scope,))
        changed = await asyncio.to_thread(
            self._holders.change_consent, certificate, proof, language.tag, text, granted, refused, live
        )
        done = N_("Your choice is recorded.")
        return self._record_page(language, certificate, proof, changed.consent, done, changed.receipt)

    @_holder_page
    async def pin(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, form = await self._posted(request)
        fields = form.fields
        proof, shown = self._proof(certificate, fields), self._shown(certificate, fields)
        new_pin, duress = fields.get("new_pin", ""), fields.get("new_duress_pin", "")
        if new_pin != fields.get("new_pin_again", "") or duress != fields.get("new_duress_pin_again", ""):
            raise FormIncomplete("the two entries of a PIN differ: type them again")
        try:
            live = await self._live(certificate, form)
        except HeadTurnFailed as failed:
            return self._record_page(language, certificate, proof, shown, retry=failed.prompt)
        await asyncio.to_thread(self._holders.change_pin, certificate, proof, new_pin, duress, live)
        if proof.needs_live_face:  # the card's proof goes on with the PIN now in force
            proof = replace(proof, pin=new_pin)
        return self._record_page(language, certificate, proof, shown, N_("Your new PIN is set."))

    @_holder_page
    async def card(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, form = await self._posted(request)
        fields = form.fields
        proof, shown = self._proof(certificate, fields), self._shown(certificate, fields)
        try:
            live = await self._live(certificate, form)
        except HeadTurnFailed as failed:
            return self._record_page(language, certificate, proof, shown, retry=failed.prompt)
        issued = await asyncio.to_thread(self._holders.issue_card, certificate, proof, live)
        if proof.needs_live_face:  # the old card is retired: the proof goes on with the new one
            proof = replace(proof, credential=issued.text)
        qr = "data:image/png;base64," + base64.b64encode(issued.qr_png).decode("ascii")
        forms = self._forms(certificate, proof, shown)
        return self._page("kiosk_card.html", language, card=issued, qr=qr, **forms)

    @_holder_page
    async def erase(self, request: web.Request, language: Language) -> web.StreamResponse:
        certificate, form = await self._posted(request)
        fields = form.fields
        proof, shown = self._proof(certificate, fields), self._shown(certificate, fields)
        if fields.get("confirm") != "erase":
            raise FormIncomplete("tick the box to say you want the record erased")
        try:
            live = await self._live(certificate, form)
        except HeadTurnFailed as failed:
            return self._record_page(language, certificate, proof, shown, retry=failed.prompt)
        erased = await asyncio.to_thread(self._holders.erase, certificate, proof, live)
        receipt_link = "data:application/json;base64," + base64.b64encode(erased.receipt.encode()).decode()
        key_link = "data:application/x-pem-file;base64," + base64.b64encode(
            erased.station_public_pem.encode()
        ).decode("ascii")
        return self._page(
            "kiosk_erased.html", language, erased=erased, receipt_link=receipt_link, key_link=key_link
        )
