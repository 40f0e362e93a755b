"""The officer desk: a traveller's photo compared 1:1, 1:N or against a manifest, and the officer's decision.

GET /desk            the form (the gallery, the photo, the comparison)
POST /desk/search    Verify (1:1) or Identify (1:N, or 1:few with the manifest as restrict_to), then
                     DescribeGallery for the threshold's story; the answer page
POST /desk/decision  RecordDecision: the officer's confirm / reject / refer / cannot decide, a reason
                     code and a note, into the transparency log under the officer

Each is the person's own call to the service (gateway.py): the service's matrix decides, and a
refusal shows as a page with the status of its category. The photo lives in memory for the request
(upload_form.py) and is gone once the answer is sent; the answer page shows the face the service
searched, cut from it in memory (probe_crop.py). Every POST needs the page's form token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from aiohttp import web

from safepassage.console.answers import (
    GalleryThreshold,
    Person,
    SearchAnswer,
    SearchKind,
    same_threshold,
    strangers_per_false_alarm,
)
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import Decision, ServiceGateway
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.probe_crop import face_crop
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.review_gateway import ReviewGateway
from safepassage.console.upload_form import SubmittedForm, read_form

__all__ = ["OfficerDesk"]

_GALLERY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_TOP_K = 20
MAX_MANIFEST = 10_000

DECISIONS = (
    ("REVIEW_CONFIRM", N_("Confirm the answer")),
    ("REVIEW_REJECT", N_("Reject the answer")),
    ("REVIEW_REFER", N_("Refer to secondary inspection")),
    ("REVIEW_CANNOT_DECIDE", N_("Cannot decide")),
)
REASONS = (
    ("REASON_SAME_PERSON", N_("The faces are of the same person")),
    ("REASON_DIFFERENT_PERSON", N_("The faces are of different people")),
    ("REASON_DOCUMENT_MISMATCH", N_("The travel document does not match")),
    ("REASON_POOR_PROBE_QUALITY", N_("The traveller's photo is too poor to judge")),
    ("REASON_NO_REFERENCE_IMAGE", N_("There is no reference image to compare with")),
    ("REASON_SECONDARY_INSPECTION", N_("Needs a secondary inspection")),
    ("REASON_OTHER", N_("Another reason (see the note)")),
)
ORIGINS = {
    "CALIBRATED": N_("calibrated on this gallery to a target false positive identification rate"),
    "WATCHLIST_DEFAULT": N_("the model's default for watchlists (not calibrated on this gallery)"),
    "MODEL_DEFAULT": N_("the model's default for 1:1 checks (not calibrated on this gallery)"),
    "SET_BY_ADMIN": N_("set by an administrator when the gallery was made"),
}
# Reference images shown per face: the first candidates, the ones an officer compares.
_SHOWN_IMAGES = 3
BASES = {
    "calibration": N_("measured on this gallery"),
    "model evidence": N_("estimated from the model's measured false match rate"),
}


class OfficerDesk:
    def __init__(
        self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens, max_upload: int
    ) -> None:
        self._gateway = gateway
        self._images = ReviewGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens
        self._max_upload = max_upload

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/desk", self.form),
            web.post("/desk/search", self.search),
            web.post("/desk/decision", self.decision),
        ]

    async def _person_on_desk(self, request: web.Request, certificate: bytes) -> None:
        await identify(request, self._gateway, certificate, "desk")

    async def form(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person_on_desk(request, certificate)
        gallery = request.query.get("gallery", "")
        return self._renderer.page(
            "desk.html",
            request[PERSON],
            current="desk",
            form_token=self._tokens.issue(certificate),
            gallery=gallery if _GALLERY_ID.fullmatch(gallery) else "",
        )

    async def _checked_form(self, request: web.Request, certificate: bytes) -> SubmittedForm:
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        return form

    async def search(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        return await self.answer(request, certificate, form)

    async def answer(
        self, request: web.Request, certificate: bytes, form: SubmittedForm
    ) -> web.StreamResponse:
        """Search the form's photo as it asks, and the answer page (the desk's upload or a webcam capture)."""
        gallery = form.required("gallery", "the gallery")
        image = form.files.get("probe", b"")
        if not image:
            raise FormIncomplete("the traveller's photo is missing")
        kind = _kind(form.text("mode"))
        # The service decides: a role that may not search is refused here, whatever page it saw.
        if kind is SearchKind.VERIFY:
            reference = form.required("reference_id", "the reference id (1:1)")
            answer = await asyncio.to_thread(self._gateway.verify, certificate, gallery, reference, image)
        else:
            manifest = _manifest(form.text("manifest")) if kind is SearchKind.FEW else []
            top_k = _top_k(form.text("top_k"))
            answer = await asyncio.to_thread(
                self._gateway.identify, certificate, gallery, image, top_k, manifest
            )
        threshold = await asyncio.to_thread(self._gateway.describe_gallery, certificate, gallery)
        person = await identify(request, self._gateway, certificate)
        crops = [face_crop(image, face.box) if face.box else None for face in answer.faces]
        references = await asyncio.to_thread(self._reference_images, certificate, person, threshold, answer)
        return self._renderer.page(
            "desk_answer.html",
            person,
            current="desk",
            form_token=self._tokens.issue(certificate),
            answer=answer,
            crops=crops,
            references=references,
            gallery=threshold,
            origin=_origin(answer, threshold),
            basis=BASES.get(threshold.implied_fpir_basis, ""),
            strangers=strangers_per_false_alarm(threshold, answer),
            target_per=round(1 / threshold.target_fpir) if threshold.target_fpir else None,
            may_decide=person.may("RecordDecision"),
            decisions=DECISIONS,
            reasons=REASONS,
        )

    def _reference_images(
        self, certificate: bytes, person: Person, gallery: GalleryThreshold, answer: SearchAnswer
    ) -> dict[str, str]:
        """The gallery's reference images of the first candidates (data: URLs), for the officer to
        compare; none where the gallery keeps none or the person's role may not see them."""
        if not gallery.keeps_reference_images or not person.may("GetReferenceImage"):
            return {}
        wanted = dict.fromkeys(
            c.reference_id for face in answer.faces for c in face.candidates[:_SHOWN_IMAGES]
        )
        found = {ref: self._images.reference_image(certificate, gallery.gallery_id, ref) for ref in wanted}
        return {ref: url for ref, url in found.items() if url is not None}

    async def decision(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        decided = Decision(
            gallery_id=form.required("gallery", "the gallery"),
            search=_kind(form.text("search")),
            reference_id=form.text("reference_id"),
            **review_fields(form),
        )
        await asyncio.to_thread(self._gateway.record_decision, certificate, decided)
        person = await identify(request, self._gateway, certificate)
        return self._renderer.page(
            "decision_recorded.html",
            person,
            current="desk",
            decided=decided,
            decision_text=dict(DECISIONS)[decided.decision],
            reason_text=dict(REASONS)[decided.reason],
        )


def _kind(value: str) -> SearchKind:
    try:
        return SearchKind(value or SearchKind.VERIFY)
    except ValueError:
        raise FormIncomplete("the comparison is not one of 1:1, 1:N or 1:few") from None


def choice(value: str, allowed: Sequence[str], label: str) -> str:
    """``value`` if the form's choice is one of ``allowed``; FormIncomplete naming ``label`` otherwise."""
    if value not in allowed:
        raise FormIncomplete(f"{label} is missing")
    return value


def review_fields(form: SubmittedForm) -> dict[str, str]:
    """What every decision form gives (decision_form.html): the answer decided on, the decision, the
    reason, the note; each code checked against its list."""
    return {
        "service_decision": choice(form.text("service_decision"), ("MATCH", "NO_MATCH"), "the answer"),
        "decision": choice(form.text("decision"), [code for code, _ in DECISIONS], "your decision"),
        "reason": choice(form.text("reason"), [code for code, _ in REASONS], "the reason"),
        "note": form.fields.get("note", ""),
    }


def _manifest(text: str) -> list[str]:
    """The manifest's reference ids, one a line (commas and spaces separate too), each once."""
    ids = list(dict.fromkeys(item for item in re.split(r"[\s,;]+", text) if item))
    if not ids:
        raise FormIncomplete("the manifest (1:few) names no reference id")
    if len(ids) > MAX_MANIFEST:
        raise FormIncomplete(f"the manifest names more than {MAX_MANIFEST} reference ids")
    return ids


def _top_k(text: str) -> int:
    try:
        value = int(text or 5)
    except ValueError:
        raise FormIncomplete("the number of candidates is not a number") from None
    return min(max(value, 1), MAX_TOP_K)


def _origin(answer: SearchAnswer, gallery: GalleryThreshold) -> str:
    """Where the answer's threshold came from, as a catalogue message."""
    if answer.threshold_source == "TARGET_FPIR":
        return ORIGINS["CALIBRATED"]
    if answer.threshold_source == "REQUEST_THRESHOLD":
        return N_("chosen for this search, stricter than the gallery's own")
    origin = answer.gallery_threshold_origin or (
        gallery.origin if same_threshold(answer.threshold, gallery.threshold) else ""
    )
    return ORIGINS.get(origin, N_("the gallery's fixed 1:1 threshold"))
