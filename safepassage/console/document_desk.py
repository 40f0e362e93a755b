"""The passport chip check on the officer desk: the traveller's live photo against the chip's portrait.

GET /desk/document          the form: DG2 (required), the SOD and DG1 (optional) as the reader
                            application read them from the chip, and the live photo
POST /desk/document/verify  TravelDocumentService.VerifyDocument as the person (gateway.py); the
                            answer page: the decision, the face distance and the threshold, and the
                            passive-authentication result in plain words
POST /desk/document/decision  RecordDocumentDecision: the officer's confirm / reject / refer / cannot
                            decide on that check, a reason and an optional note, for the log

The same files as `safepassage verify-document --dg2 F [--sod F] [--dg1 F] LIVE.jpg`. The files and
the photo live in memory for the request (upload_form.py) and are gone once the answer is sent.
Nothing of DG1 (the MRZ: name, document number) is shown or logged: the service answers none, and
its log keeps keyed hashes only. The service's matrix decides who may check; a refusal is a page.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from safepassage.console.document_gateway import ChipFiles, DocumentDecision, DocumentGateway
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.officer_desk import DECISIONS, REASONS, choice, review_fields
from safepassage.console.pages import Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.upload_form import read_form

__all__ = ["DocumentDesk"]

# Why passive authentication failed (travel_document.proto's PassiveAuthenticationFailure), in words.
FAILURES = {
    "SIGNATURE_INVALID": N_("the SOD's signature does not verify under its Document Signer certificate"),
    "SIGNED_CONTENT_DIGEST_MISMATCH": N_("the SOD was edited after it was signed"),
    "CSCA_UNKNOWN": N_("no trusted country signing authority (CSCA) issued the Document Signer certificate"),
    "DOCUMENT_SIGNER_NOT_ISSUED_BY_CSCA": N_(
        "the Document Signer certificate was not signed by the trusted CSCA of that name"
    ),
    "DOCUMENT_SIGNER_EXPIRED": N_("the Document Signer certificate had expired when the chip was signed"),
    "DOCUMENT_SIGNER_NOT_YET_VALID": N_(
        "the Document Signer certificate was not yet valid when the chip was signed"
    ),
    "CSCA_NOT_VALID": N_("the CSCA certificate was not valid when the chip was signed"),
    "SIGNING_TIME_IN_FUTURE": N_("the SOD claims to be signed in the future"),
    "DATA_GROUP_NOT_IN_SOD": N_("a data group given is not listed in the SOD"),
    "DATA_GROUP_HASH_MISMATCH": N_(
        "a data group does not match the SOD's hash: it was changed after issue (a swapped photo?)"
    ),
}


class DocumentDesk:
    def __init__(
        self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens, max_upload: int
    ) -> None:
        self._gateway = gateway
        self._documents = DocumentGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens
        self._max_upload = max_upload

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/desk/document", self.form),
            web.post("/desk/document/verify", self.verify),
            web.post("/desk/document/decision", self.decision),
        ]

    async def form(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        person = await identify(request, self._gateway, certificate, "document")
        return self._renderer.page(
            "desk_document.html", person, current="document", form_token=self._tokens.issue(certificate)
        )

    async def verify(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        dg2 = form.files.get("dg2", b"")
        if not dg2:
            raise FormIncomplete("the chip's DG2 file is missing")
        live = form.files.get("probe", b"")
        if not live:
            raise FormIncomplete("the traveller's photo is missing")
        chip = ChipFiles(dg2, form.files.get("sod", b""), form.files.get("dg1", b""))
        # The service decides: a role that may not check documents is refused here, whatever page it saw.
        answer = await asyncio.to_thread(self._documents.verify_document, certificate, chip, live)
        person = await identify(request, self._gateway, certificate)
        return self._renderer.page(
            "desk_document_answer.html",
            person,
            current="document",
            form_token=self._tokens.issue(certificate),
            may_decide=person.may("RecordDocumentDecision"),
            decisions=DECISIONS,
            reasons=REASONS,
            answer=answer,
            groups=", ".join(f"DG{group}" for group in answer.data_groups),
            failure=FAILURES.get(answer.failure, N_("the SOD does not prove the chip's data")),
        )

    async def decision(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        decided = DocumentDecision(
            check_id=form.required("check_id", "the check"),
            passive_authentication=choice(
                form.text("passive_authentication"), ("PA_PASSED", "PA_FAILED", "PA_NOT_CHECKED"), "the proof"
            ),
            **review_fields(form),
        )
        # The service decides: a role that may not record one is refused, whatever page it saw.
        await asyncio.to_thread(self._documents.record_decision, certificate, decided)
        person = await identify(request, self._gateway, certificate)
        return self._renderer.page(
            "document_decision_recorded.html",
            person,
            current="document",
            decided=decided,
            decision_text=dict(DECISIONS)[decided.decision],
            reason_text=dict(REASONS)[decided.reason],
        )
