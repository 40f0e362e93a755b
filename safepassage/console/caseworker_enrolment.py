"""NGO caseworker enrolment: the holder's step, the caseworker's step, and the page the holder keeps.

GET  /ngo/enrol           the holder's step, in the language they choose (?language=): the consent
                          text with each scope (store, verify_at_border, duplicate_check,
                          share:<the caseworker's organisation>) granted or refused on its own, and
                          their PIN and duress PIN, typed by the holder (password fields, never
                          rendered back)
POST /ngo/enrol           checks the holder's answers, seals them (holder_step.py) and shows the
                          caseworker's step: personal details, a document with who holds it now, an
                          entitlement, the NGO contact and referral channel, and the face (the
                          holder's head turn through the webcam, or a photo)
POST /ngo/enrol/head-turn a head-turn challenge for the page's script (JSON; head_turn.py)
POST /ngo/enrol/record    the webcam's head turn first (CheckLiveness, as the caseworker): one that
                          did not pass comes back with a plain prompt and nothing is enrolled; the
                          frame it passed on (or the photo chosen) then AssessCapture (the kiosk's
                          quality rules): a face to retake comes back with the prompt and the
                          caseworker's fields; a good one is enrolled (EnrolRecord, the caseworker's
                          own call; the head turn's statement as face_statement, so the service
                          records the face as head_turn in the consent receipt) and the page the
                          holder keeps is shown, in their language, with a print stylesheet: the QR
                          credential, the consent receipt, the recovery code, and what each is for

Consent comes before the record: nothing about the person is typed before they decided what may
be kept. A photo chosen instead of the camera is enrolled without a liveness check (the receipt
says "none"); a deployment that requires a live face (enrolment.require_face_liveness) refuses it,
and the page says so.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import quote

from aiohttp import web

from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.console.capture import PROMPTS
from safepassage.console.capture_gateway import CaptureGateway
from safepassage.console.caseworker_gateway import CaseworkerGateway, EnrolmentDraft
from safepassage.console.catalogue import Catalogue
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.head_turn import HeadTurn, HeadTurnFailed
from safepassage.console.holder_step import HolderAnswers, HolderStepSeal
from safepassage.console.languages import QUERY, Language, RequestLanguage
from safepassage.console.languages import release as release_language
from safepassage.console.languages import use as use_language
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete, NotPossibleNow, RequestRefused
from safepassage.console.upload_form import SubmittedForm, read_form

__all__ = ["FACE_LIVENESS", "LIVE_FACE_REQUIRED", "CaseworkerEnrolment", "consent_text"]

SEALED = "holder_step"
# The holder's language, in the challenge endpoint's address (the prompt is theirs, the page the
# caseworker's); not "lang", which would switch the caseworker's own console language.
HOLDER_QUERY = "holder_language"
# The challenge's request carries the form token alone.
_CHALLENGE_FORM_BYTES = 64 * 1024
# How the enrolled face was captured, as the service recorded it in the consent receipt.
FACE_LIVENESS: Mapping[str, str] = {
    "head_turn": N_("The face was checked live: the holder turned their head as asked."),
    "supervised": N_("The face was captured live, watched by the capturing device's user."),
    "none": N_("The face was enrolled from a photo, without a liveness check."),
}
LIVE_FACE_REQUIRED = N_(
    "This deployment enrols only a face captured live. Use the camera: the holder turns their head as asked."
)
CONSENT_INTRO = N_(
    "SafePassage keeps a sealed record of who you are, your documents, your work permits and an NGO"
    " you can call, so that you can prove who you are even if your papers are taken. You decide each"
    " use below, one by one. You can change your mind later, at your NGO or at its kiosk."
)
SCOPE_TEXTS: Mapping[str, str] = {
    "store": N_(
        "Keep my record. It is sealed: only I can open it, with my recovery code or with my card,"
        " my face and my PIN. Without this, nothing is kept."
    ),
    "verify_at_border": N_(
        "Let border officers check my card against my face, and see my name, my photo and whether"
        " my documents are valid."
    ),
    "duplicate_check": N_(
        "Let my NGO check that I am not enrolled twice. My face is compared only with the records of"
        " people who allow this too."
    ),
    "share": N_("Let my NGO (%(organisation)s) see my whole record when I ask them to."),
}
DOCUMENT_KINDS = {
    "passport": N_("Passport"),
    "national_id": N_("National identity card"),
    "residence_permit": N_("Residence permit"),
    "travel_document": N_("Travel document"),
    "birth_certificate": N_("Birth certificate"),
    "other": N_("Other document"),
}
POSSESSION = {
    "held_by_holder": N_("The holder has it"),
    "withheld_by_employer": N_("An employer or agent keeps it"),
    "lost_or_stolen": N_("Lost or stolen"),
    "unknown": N_("Not known"),
}
ENTITLEMENT_KINDS = {
    "work_permit": N_("Work permit"),
    "visa": N_("Visa"),
    "residence_permit": N_("Residence permit"),
    "other": N_("Other entitlement"),
}
RECORD_FIELDS = (
    "gallery",
    "given_names",
    "family_name",
    "date_of_birth",
    "nationality",
    "document_kind",
    "document_number",
    "document_country",
    "document_expiry",
    "possession",
    "entitlement_kind",
    "entitlement_reference",
    "employer",
    "contract_terms",
    "valid_from",
    "valid_until",
    "organisation",
    "phone",
    "email",
    "referral_channel",
)


@contextmanager
def _rendered_in(language: Language) -> Iterator[None]:
    """Render in `language` whatever the request's is: the holder's pages are in the holder's."""
    token = use_language(RequestLanguage(language))
    try:
        yield
    finally:
        release_language(token)


def scope_labels(organisation: str) -> tuple[str, ...]:
    return ("store", "verify_at_border", "duplicate_check", f"share:{organisation}")


def consent_text(catalogue: Catalogue, organisation: str) -> str:
    """The consent as the holder read it, in their language: what the service keeps the hash of."""
    lines = [catalogue.gettext(CONSENT_INTRO)]
    for label in scope_labels(organisation):
        scope = label.partition(":")[0]
        lines.append(f"{label}: " + catalogue.gettext(SCOPE_TEXTS[scope]) % {"organisation": organisation})
    return "\n".join(lines)


class CaseworkerEnrolment:
    def __init__(
        self,
        gateway: ServiceGateway,
        renderer: Renderer,
        tokens: FormTokens,
        seal: HolderStepSeal,
        head_turn: HeadTurn,
        max_upload: int,
    ) -> None:
        self._gateway = gateway
        self._records = CaseworkerGateway(gateway)
        self._capture = CaptureGateway(gateway)
        self._head_turn = head_turn
        self._renderer = renderer
        self._tokens = tokens
        self._seal = seal
        self._max_upload = max_upload

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ngo/enrol", self.holder_step),
            web.post("/ngo/enrol", self.holder_done),
            web.post("/ngo/enrol/head-turn", self.head_turn_challenge),
            web.post("/ngo/enrol/record", self.enrol),
        ]

    def _holder_language(self, code: str) -> Language:
        """The language the holder chose, else the request's (the console's choice rules)."""
        return self._renderer.languages.find(code) or self._renderer.language.language

    async def _person(self, request: web.Request, certificate: bytes) -> None:
        await identify(request, self._gateway, certificate, "enrol")

    def _holder_page(
        self, request: web.Request, certificate: bytes, tag: str, problem: str = "", status: int = 200
    ) -> web.StreamResponse:
        language = self._holder_language(tag)
        organisation = request[PERSON].organisation
        with _rendered_in(language):
            return self._holder_page_in(request, certificate, language, organisation, problem, status)

    def _holder_page_in(
        self,
        request: web.Request,
        certificate: bytes,
        language: Language,
        organisation: str,
        problem: str,
        status: int,
    ) -> web.StreamResponse:
        return self._renderer.page(
            "ngo_enrol_holder.html",
            request[PERSON],
            current="enrol",
            status=status,
            form_token=self._tokens.issue(certificate),
            languages=self._renderer.languages.shipped,
            chosen=language,
            intro=CONSENT_INTRO,
            scopes=[(label, SCOPE_TEXTS[label.partition(":")[0]]) for label in scope_labels(organisation)],
            organisation=organisation,
            problem=problem,
        )

    async def holder_step(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate)
        return self._holder_page(request, certificate, request.query.get(QUERY, ""))

    async def holder_done(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        await self._person(request, certificate)
        language = self._holder_language(form.text("language"))
        organisation = request[PERSON].organisation
        problem = _holder_problem(form, organisation)
        if problem:
            # Back to the holder, in their language; the PIN fields are never filled in again.
            return self._holder_page(request, certificate, language.tag, problem, status=422)
        labels = scope_labels(organisation)
        answers = HolderAnswers(
            language=language.tag,
            consent_text=consent_text(language.catalogue, organisation),
            granted=tuple(label for label in labels if form.text(f"scope:{label}") == "grant"),
            refused=tuple(label for label in labels if form.text(f"scope:{label}") == "refuse"),
            pin=form.text("pin"),
            duress_pin=form.text("duress_pin"),
        )
        sealed = self._seal.seal(certificate, answers)
        return self._record_page(request, certificate, sealed, {"organisation": organisation})

    def _record_page(
        self,
        request: web.Request,
        certificate: bytes,
        sealed: str,
        values: Mapping[str, str],
        prompt: str = "",
        problem: str = "",
        status: int = 200,
        retry: str = "",
    ) -> web.StreamResponse:
        # The turn's prompt is for the holder: the challenge is asked for in their language.
        holder = self._seal.open(certificate, sealed).language
        return self._renderer.page(
            "ngo_enrol_record.html",
            request[PERSON],
            current="enrol",
            status=status,
            form_token=self._tokens.issue(certificate),
            sealed=sealed,
            head_turn_endpoint=f"/ngo/enrol/head-turn?{HOLDER_QUERY}={quote(holder)}",
            values={name: values.get(name, "") for name in RECORD_FIELDS},
            document_kinds=DOCUMENT_KINDS,
            possession=POSSESSION,
            entitlement_kinds=ENTITLEMENT_KINDS,
            prompt=PROMPTS.get(prompt, ""),
            problem=problem,
            retry=retry,
        )

    async def head_turn_challenge(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await read_form(request, _CHALLENGE_FORM_BYTES, self._tokens, certificate)  # its token, checked
        await self._person(request, certificate)
        holder = self._holder_language(request.query.get(HOLDER_QUERY, ""))
        return await self._head_turn.challenge(certificate, holder.catalogue.gettext)

    async def enrol(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        sealed = form.text(SEALED)
        answers = self._seal.open(certificate, sealed)
        await self._person(request, certificate)
        values = {name: form.text(name) for name in RECORD_FIELDS}
        try:
            live = await self._head_turn.live_capture(certificate, form)
        except HeadTurnFailed as failed:
            return self._record_page(request, certificate, sealed, values, status=422, retry=failed.prompt)
        except RequestRefused as refused:  # a challenge expired or spent, frames it cannot read
            return self._record_page(request, certificate, sealed, values, problem=str(refused), status=422)
        # The frame the head turn passed on, with the service's statement; else the photo chosen.
        face = live.image if live is not None else form.files.get("probe", b"")
        if not face:
            return self._record_page(
                request,
                certificate,
                sealed,
                values,
                problem=N_("Take the holder's photo, or choose one."),
                status=422,
            )
        quality = await asyncio.to_thread(self._capture.assess, certificate, face)
        if quality.prompt:
            return self._record_page(request, certificate, sealed, values, prompt=quality.prompt, status=422)
        try:
            record = _record(form, face, answers.language)
            draft = EnrolmentDraft(
                gallery_id=form.required("gallery", "gallery"),
                record=record,
                face=face,
                language=answers.language,
                consent_text=answers.consent_text,
                granted=answers.granted,
                refused=answers.refused,
                pin=answers.pin,
                duress_pin=answers.duress_pin,
                face_statement=live.statement if live is not None else b"",
            )
            enrolled = await asyncio.to_thread(self._records.enrol, certificate, draft)
        except (RequestRefused, FormIncomplete) as refused:
            # The service names the field it refused (never its value); the caseworker corrects it.
            return self._record_page(request, certificate, sealed, values, problem=str(refused), status=422)
        except NotPossibleNow as refused:
            if live is not None or not str(refused).startswith("faces:"):
                raise
            # A photo, where the deployment enrols only a face captured live.
            return self._record_page(
                request, certificate, sealed, values, problem=LIVE_FACE_REQUIRED, status=409
            )
        station_id, station_key = await asyncio.to_thread(self._records.station_key, certificate)
        png = enrolled.credential_png
        with _rendered_in(self._holder_language(answers.language)):
            return self._renderer.page(
                "ngo_enrolled.html",
                request[PERSON],
                current="enrol",
                enrolled=enrolled,
                qr=("data:image/png;base64," + base64.b64encode(png).decode("ascii")) if png else "",
                organisation=record.contact.organisation,
                phone=record.contact.phone,
                channel=record.contact.referral_channel,
                station_id=station_id,
                station_key=station_key,
                face_liveness=FACE_LIVENESS.get(enrolled.face_liveness, ""),
            )


def _holder_problem(form: SubmittedForm, organisation: str) -> str:
    """What the holder must correct on their step ("" when nothing): a catalogue message."""
    for label in scope_labels(organisation):
        if form.text(f"scope:{label}") not in ("grant", "refuse"):
            return N_("Please answer yes or no for every use.")
    if form.text("scope:store") != "grant":
        return N_("Without keeping the record nothing can be enrolled. You can stop here.")
    pin, duress = form.text("pin"), form.text("duress_pin")
    for value in (pin, duress):
        if not (value.isascii() and value.isdigit() and 6 <= len(value) <= 12):
            return N_("Each PIN must be 6 to 12 digits.")
    if pin != form.text("pin_again") or duress != form.text("duress_pin_again"):
        return N_("The PINs typed twice are not the same. Please type them again.")
    if pin == duress:
        return N_("The danger PIN must be different from your PIN.")
    return ""


def _record(form: SubmittedForm, face: bytes, language: str) -> pb.ProtectedRecord:
    """The record as the caseworker typed it; the service checks every value (enrolment/record.py)."""
    documents = []
    if form.text("document_number"):
        documents.append(
            pb.IdentityDocument(
                kind=form.text("document_kind"),
                number=form.text("document_number"),
                issuing_country=form.text("document_country").upper(),
                expiry=form.text("document_expiry"),
                possession=form.text("possession"),
                photo=form.files.get("document_photo", b""),
            )
        )
    entitlements = []
    if form.text("entitlement_reference"):
        entitlements.append(
            pb.Entitlement(
                kind=form.text("entitlement_kind"),
                reference=form.text("entitlement_reference"),
                employer=form.text("employer"),
                contract_terms=form.text("contract_terms"),
                valid_from=form.text("valid_from"),
                valid_until=form.text("valid_until"),
            )
        )
    return pb.ProtectedRecord(
        details=pb.PersonalDetails(
            given_names=form.required("given_names", "given names"),
            family_name=form.text("family_name"),
            date_of_birth=form.text("date_of_birth"),
            nationality=form.text("nationality").upper(),
            preferred_language=language,
        ),
        documents=documents,
        entitlements=entitlements,
        contact=pb.NgoContact(
            organisation=form.text("organisation"),
            phone=form.text("phone"),
            email=form.text("email"),
            referral_channel=form.text("referral_channel"),
        ),
        face_photo=face,
    )
