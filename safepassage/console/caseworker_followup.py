"""NGO caseworker follow-up: the organisation's referrals, consent withdrawals, erasure requests.

GET  /ngo/referrals               ListReferrals: duress and PIN-lockout referrals of the channels the
                                  caseworker may read, their organisation's only (the service's rule)
POST /ngo/referrals/acknowledge   AcknowledgeReferral
GET  /ngo/consent                 the form: a record id and the scopes the holder asked to withdraw
POST /ngo/consent                 ChangeConsent naming the record by id: the record policy lets the
                                  record's own organisation record a withdrawal (narrowing only) on
                                  the holder's instruction; withdrawing "store" erases the record.
                                  The signed receipt(s) to print
GET  /ngo/erasure                 the form: the holder's recovery code (the policy's proof for erasure)
POST /ngo/erasure                 EraseRecord; the signed erasure receipt to print

Nothing here decides who may see what: a caseworker of another organisation naming a record is
refused by the record policy, and the refusal is the service's, logged under them.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from safepassage.console.caseworker_gateway import CaseworkerGateway
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.upload_form import read_form

__all__ = ["CaseworkerFollowUp"]

CONTEXTS = {
    "verification": N_("danger PIN at a border check"),
    "kiosk": N_("danger PIN at the kiosk"),
    "pin_lockout": N_("PIN locked after wrong tries"),
}
WITHDRAWAL_TEXT = N_("Withdrawn by the NGO caseworker on the holder's own instruction.")
_MAX_FORM = 64 * 1024


class CaseworkerFollowUp:
    def __init__(self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens) -> None:
        self._gateway = gateway
        self._records = CaseworkerGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ngo/referrals", self.referrals),
            web.post("/ngo/referrals/acknowledge", self.acknowledge),
            web.get("/ngo/consent", self.withdrawal_form),
            web.post("/ngo/consent", self.withdraw),
            web.get("/ngo/erasure", self.erasure_form),
            web.post("/ngo/erasure", self.erase),
        ]

    async def _person(self, request: web.Request, certificate: bytes, page: str) -> None:
        await identify(request, self._gateway, certificate, page)

    async def _posted(self, request: web.Request, page: str) -> tuple[bytes, dict[str, str]]:
        certificate = peer_certificate(request)
        form = await read_form(request, _MAX_FORM, self._tokens, certificate)
        await self._person(request, certificate, page)
        return certificate, {name: form.text(name) for name in form.fields}

    async def referrals(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate, "referrals")
        rows = await asyncio.to_thread(self._records.referrals, certificate)
        return self._renderer.page(
            "ngo_referrals.html",
            request[PERSON],
            current="referrals",
            form_token=self._tokens.issue(certificate),
            open=[row for row in rows if not row.acknowledged_at],
            acknowledged=[row for row in rows if row.acknowledged_at],
            contexts=CONTEXTS,
        )

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        certificate, fields = await self._posted(request, "referrals")
        try:
            referral_id = int(fields.get("referral_id", ""))
        except ValueError:
            raise FormIncomplete("referral_id must be a number") from None
        await asyncio.to_thread(self._records.acknowledge, certificate, referral_id)
        # Back to the inbox (303: the browser GETs it), with the headers every response carries.
        return web.Response(status=303, headers={"Location": "/ngo/referrals"})

    async def withdrawal_form(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate, "consent")
        return self._renderer.page(
            "ngo_withdraw.html",
            request[PERSON],
            current="consent",
            form_token=self._tokens.issue(certificate),
            organisation=request[PERSON].organisation,
        )

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        certificate, fields = await self._posted(request, "consent")
        record_id = fields.get("record_id", "")
        if not record_id:
            raise FormIncomplete("record id is missing")
        if fields.get("instructed") != "yes":
            raise FormIncomplete("a withdrawal is recorded only on the holder's own instruction")
        organisation = request[PERSON].organisation
        offered = ("verify_at_border", "duplicate_check", f"share:{organisation}", "store")
        scopes = [scope for scope in offered if fields.get(f"scope:{scope}") == "withdraw"]
        if not scopes:
            raise FormIncomplete("choose at least one use to withdraw")
        language = self._renderer.catalogue.language.replace("_", "-")
        text = self._renderer.text(WITHDRAWAL_TEXT)
        changed = await asyncio.to_thread(
            self._records.withdraw, certificate, record_id, scopes, language, text
        )
        keys = await asyncio.to_thread(self._records.station_key, certificate)
        return self._renderer.page(
            "ngo_receipt.html",
            request[PERSON],
            current="consent",
            headline=N_("Consent withdrawn"),
            record_id=changed.record_id,
            scopes=changed.scopes,
            receipts=[r for r in (changed.receipt, changed.erasure_receipt) if r],
            erased=bool(changed.erasure_receipt),
            station_id=keys[0],
            station_key=keys[1],
        )

    async def erasure_form(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate, "erasure")
        return self._renderer.page(
            "ngo_erase.html",
            request[PERSON],
            current="erasure",
            form_token=self._tokens.issue(certificate),
        )

    async def erase(self, request: web.Request) -> web.StreamResponse:
        certificate, fields = await self._posted(request, "erasure")
        code = fields.get("recovery_code", "")
        if not code:
            raise FormIncomplete("the holder's recovery code is missing")
        erased = await asyncio.to_thread(self._records.erase, certificate, code)
        keys = await asyncio.to_thread(self._records.station_key, certificate)
        return self._renderer.page(
            "ngo_receipt.html",
            request[PERSON],
            current="erasure",
            headline=N_("Record erased"),
            record_id=erased.record_id,
            scopes=(),
            receipts=[erased.receipt],
            erased=True,
            station_id=keys[0],
            station_key=keys[1],
        )
