"""Galleries, for administrators: list, create, calibrate from strangers' photos, bulk import.

GET  /admin/galleries            every gallery: size, index kind and measured recall, threshold and
                                 where it came from, the FPIR it implies, calibration, background cohort
POST /admin/galleries/create     CreateGallery (an id and a purpose)
POST /admin/galleries/calibrate  CalibrateGallery on the faces of a multi-file upload of strangers'
                                 photos (a target FPIR, optionally a background cohort); a per-file
                                 report and the threshold and FPIR after
POST /admin/galleries/import     BulkInsertTemplates, one photo per reference id (the file name), run
                                 in the background (import_jobs.py); answers with a redirect to:
GET  /admin/galleries/import/ID  the import's page: photos sent so far of the total, refreshing
                                 itself (a meta refresh: no script), then the per-file report
                                 (enrolled, already present, no face, refused); its starter's alone

Every action is the person's own call (admin_gateway.py): the matrix decides (administrators), the
transparency log records it under them. The page is offered to roles that may create galleries.
Photos live in memory for the request, as on the desk (upload_form.py). The report is rendered once
the service has answered, except an import's, whose page shows its progress.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from safepassage.console.admin_gateway import AdminGateway, FileOutcome, ImportReport
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.import_jobs import ImportJobs
from safepassage.console.pages import PERSON, Renderer, check_page, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete, TooMuch
from safepassage.console.upload_form import SubmittedForm, read_form

__all__ = ["OUTCOMES", "GalleryAdministration"]

MAX_FILES = 1000  # the service lists at most this many failed items of a bulk import
OUTCOMES = {
    FileOutcome.FACE_FOUND: N_("face found and used"),
    FileOutcome.ENROLLED: N_("enrolled"),
    FileOutcome.ALREADY_PRESENT: N_("already present (not changed)"),
    FileOutcome.NO_FACE: N_("no face found"),
    FileOutcome.REFUSED: N_("refused"),
}
PURPOSES = (
    ("watchlist", N_("Watchlist")),
    ("protected_identity", N_("Protected identity records")),
)
ORIGINS = {
    "CALIBRATED": N_("calibrated to a target FPIR"),
    "WATCHLIST_DEFAULT": N_("the model's watchlist default"),
    "MODEL_DEFAULT": N_("the model's 1:1 default"),
    "SET_BY_ADMIN": N_("set by an administrator"),
}
BASES = {
    "calibration": N_("measured"),
    "model evidence": N_("estimated from the model"),
}


class GalleryAdministration:
    def __init__(
        self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens, max_upload: int
    ) -> None:
        self._gateway = gateway
        self._admin = AdminGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens
        self._max_upload = max_upload
        self._imports: ImportJobs[ImportReport] = ImportJobs()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/galleries", self.show),
            web.post("/admin/galleries/create", self.create),
            web.post("/admin/galleries/calibrate", self.calibrate),
            web.post("/admin/galleries/import", self.bulk_import),
            web.get("/admin/galleries/import/{job}", self.import_page),
        ]

    async def _person(self, request: web.Request, certificate: bytes) -> None:
        await identify(request, self._gateway, certificate)

    async def _checked_form(self, request: web.Request, certificate: bytes) -> SubmittedForm:
        form = await read_form(request, self._max_upload, self._tokens, certificate)
        return form

    async def show(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate)
        check_page(request[PERSON], "galleries")
        galleries = await asyncio.to_thread(self._admin.list_galleries, certificate)
        return self._renderer.page(
            "admin_galleries.html",
            request[PERSON],
            current="galleries",
            form_token=self._tokens.issue(certificate),
            galleries=galleries,
            watchlists=[g.gallery_id for g in galleries if g.purpose == "watchlist"],
            purposes=PURPOSES,
            origins=ORIGINS,
            bases=BASES,
        )

    async def create(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        gallery_id = form.required("gallery", "the gallery id")
        created = await asyncio.to_thread(
            self._admin.create_gallery, certificate, gallery_id, form.text("purpose")
        )
        await self._person(request, certificate)
        return self._renderer.page(
            "admin_done.html",
            request[PERSON],
            current="galleries",
            headline=N_("Gallery created"),
            gallery_id=created.gallery_id,
            files=(),
            gallery=created,
            origins=ORIGINS,
            bases=BASES,
            outcomes=OUTCOMES,
        )

    async def calibrate(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        gallery_id = form.required("gallery", "the gallery")
        target = _target_fpir(form.text("target_fpir"))
        photos = _photos(form, "strangers")
        report = await asyncio.to_thread(
            self._admin.calibrate,
            certificate,
            gallery_id,
            photos,
            target,
            form.text("background_cohort") == "yes",
        )
        await self._person(request, certificate)
        return self._renderer.page(
            "admin_done.html",
            request[PERSON],
            current="galleries",
            headline=N_("Gallery calibrated"),
            gallery_id=gallery_id,
            files=report.files,
            gallery=report.gallery,
            origins=ORIGINS,
            bases=BASES,
            outcomes=OUTCOMES,
        )

    async def bulk_import(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        gallery_id = form.required("gallery", "the gallery")
        photos = _photos(form, "photos")
        # The service decides every file, as the person, on the job's thread; the page follows it.
        job_id = self._imports.start(
            certificate,
            gallery_id,
            len(photos),
            partial(self._admin.bulk_import, certificate, gallery_id, photos),
        )
        raise web.HTTPSeeOther(f"/admin/galleries/import/{job_id}")

    async def import_page(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate)
        check_page(request[PERSON], "galleries")
        job = self._imports.get(certificate, request.match_info["job"])
        if job.refusal is not None:
            raise job.refusal  # rendered as any refusal is, in words
        if job.report is None:
            return self._renderer.page(
                "admin_import_progress.html", request[PERSON], current="galleries", job=job
            )
        galleries = await asyncio.to_thread(self._admin.list_galleries, certificate)
        return self._renderer.page(
            "admin_done.html",
            request[PERSON],
            current="galleries",
            headline=N_("Photos imported"),
            gallery_id=job.gallery_id,
            files=job.report.files,
            gallery=next((g for g in galleries if g.gallery_id == job.gallery_id), None),
            origins=ORIGINS,
            bases=BASES,
            outcomes=OUTCOMES,
        )


def _photos(form: SubmittedForm, field: str) -> list[tuple[str, bytes]]:
    photos = [(name, body) for part, name, body in form.uploads if part == field]
    if not photos:
        raise FormIncomplete("no photo was chosen")
    if len(photos) > MAX_FILES:
        raise TooMuch(f"more than {MAX_FILES} photos at once; send them in parts")
    return photos


def _target_fpir(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise FormIncomplete("the target FPIR is not a number") from None
    if not 0 < value < 1:
        raise FormIncomplete("the target FPIR must lie between 0 and 1")
    return value
