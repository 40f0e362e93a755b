"""The console's pages: which exist, who is offered each, how they are rendered, and their headers.

A page is offered to a person when their role may call one of the operations it needs, as the
service's own answer (DescribeCaller: the authorisation matrix) says; a page refused renders the
refusal page with 403. Offering is not granting: every action on a page is a call the service
decides again. Later pages (CCTV review, administration) join `PAGES` with their handlers.

Every response, refusals included, carries the same headers: a Content-Security-Policy that allows
the console's own stylesheet, images inside the page (a probe crop) and forms to itself, and nothing
else (no script at all, no frame, no third-party request); X-Frame-Options DENY; no caching (pages
show biometric answers); no referrer. The one cookie is the language a person chose (languages.py); a
page renders in the request's language. Templates are escaped
automatically, and every string goes through the message catalogue.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography import x509

from safepassage.console.answers import Person
from safepassage.console.catalogue import Catalogue
from safepassage.console.gateway import ServiceGateway
from safepassage.console.languages import Languages, RequestLanguage, switch_link
from safepassage.console.languages import current as current_language
from safepassage.console.languages import release as release_language
from safepassage.console.languages import use as use_language
from safepassage.console.refusals import N_, NothingThere, RoleRefused, refusal_page
from safepassage.core.errors import SafePassageError

__all__ = [
    "HEADERS",
    "KIOSK_HEADERS",
    "KIOSK_HOLDER_HEADERS",
    "PAGES",
    "PERSON",
    "HomePage",
    "Page",
    "Renderer",
    "certificate_facts",
    "check_page",
    "headers_and_refusals",
    "pages_for",
    "peer_certificate",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Where a handler keeps the person it learnt the request is from (for the refusal page's navigation).
PERSON = web.RequestKey("person", Person)

HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Strict-Transport-Security": "max-age=31536000",
}

# The one page with a script: the desk's webcam capture (a same-origin static file, no inline script),
# which also needs the camera. Every other page keeps HEADERS: no script at all, the camera off.
PAGE_HEADERS: Mapping[str, Mapping[str, str]] = {
    "/desk/capture": {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), interest-cohort=()",
    },
    # The caseworker's enrolment records the holder's head turn (static/liveness.js, caseworker_enrolment.py):
    # the record step answers POST /ngo/enrol, a retake POST /ngo/enrol/record; the script asks the
    # console for a challenge (connect-src 'self').
    **{
        path: {
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self';"
                " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), interest-cohort=()",
        }
        for path in ("/ngo/enrol", "/ngo/enrol/record")
    },
    # The officer's holder check (holder_desk.py) records the traveller's head turn the same way: the
    # form, and its answer to a turn that did not pass (POST /desk/holder/verify).
    **{
        path: {
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self';"
                " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), interest-cohort=()",
        }
        for path in ("/desk/holder", "/desk/holder/verify")
    },
    # The auditor's in-browser check of the transparency log (static/auditor_verify.js): its script
    # fetches the log's files beside the page (connect-src 'self'); the camera stays off.
    "/auditor/verify/": {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self';"
            " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    },
}

# Kiosk mode's pages (kiosk.py) run one same-origin script (static/kiosk.js: the idle timeout that
# sends an untouched screen back to its start, and the print button); the language choice, no camera.
KIOSK_PATH = "/kiosk"
KIOSK_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
# The holder's pages, below the language (/kiosk/<lang>...), also run static/liveness.js: a holder with
# a card turns their head before each call, so these pages may use the camera and ask the console for
# a challenge (connect-src 'self').
KIOSK_HOLDER_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), interest-cohort=()",
}

ROLE_NAMES: Mapping[str, str] = {
    "officer": N_("border officer"),
    "cctv_edge": N_("CCTV camera"),
    "kiosk": N_("kiosk"),
    "ngo_caseworker": N_("NGO caseworker"),
    "auditor": N_("auditor"),
    "admin": N_("administrator"),
}


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    title: str  # a catalogue message
    summary: str  # a catalogue message
    operations: frozenset[str]  # the person's role may call one of these (empty: every person)
    every: frozenset[str] = frozenset()  # ... and all of these

    def offered_to(self, person: Person) -> bool:
        if not all(person.may(operation) for operation in self.every):
            return False
        return not self.operations or any(person.may(operation) for operation in self.operations)


PAGES: tuple[Page, ...] = (
    Page("home", "/", N_("Home"), N_("Who you are, and the pages your role may use."), frozenset()),
    Page(
        "desk",
        "/desk",
        N_("Officer desk"),
        N_("Compare a traveller's photo 1:1, 1:N or against a manifest, and record your decision."),
        frozenset({"Verify", "Identify"}),
    ),
    Page(
        "document",
        "/desk/document",
        N_("Passport chip check"),
        N_("Compare a traveller's live photo with their passport chip's photo, and check the chip's proof."),
        frozenset({"VerifyDocument"}),
    ),
    # The holder of a protected record at the border (holder_desk.py): the desk's roles that may also
    # VerifyHolder and run the head-turn check, officers (the kiosk has its own mode).
    Page(
        "holder",
        "/desk/holder",
        N_("Holder check"),
        N_("Check a protected record's holder by their card and a head turn; see who holds their papers."),
        frozenset({"Verify", "Identify"}),
        every=frozenset({"VerifyHolder", "StartLiveness", "CheckLiveness"}),
    ),
    Page(
        "review",
        "/review",
        N_("CCTV hit review"),
        N_("Review the hits cameras kept: two different people must confirm a hit; one may dismiss it."),
        frozenset({"ListKeptHits"}),
    ),
    Page(
        "galleries",
        "/admin/galleries",
        N_("Galleries"),
        N_("See every gallery's size, index and threshold; create, calibrate and import photos."),
        frozenset({"CreateGallery"}),
    ),
    Page(
        "certificates",
        "/admin/certificates",
        N_("Certificates"),
        N_("Issue a person's certificate with their role, list the certificates, and revoke one."),
        frozenset({"IssueCertificate"}),
    ),
    Page(
        "authorisations",
        "/admin/authorisations",
        N_("CCTV authorisations"),
        N_("The CCTV authorisations cameras have used, active and expired, and every search under each."),
        frozenset({"ListAuthorisations"}),
    ),
    Page(
        "fishing",
        "/admin/fishing-alerts",
        N_("Fishing alerts"),
        N_("Accounts whose searches looked like trawling for faces."),
        frozenset({"ListFishingAlerts"}),
    ),
    Page(
        "auditor_log",
        "/auditor/log",
        N_("Transparency log"),
        N_("Browse the log's entries by time, operation, actor and outcome, and its signed tree heads."),
        frozenset({"ListLogEntries"}),
    ),
    Page(
        "auditor_verify",
        "/auditor/verify/",
        N_("Check the log"),
        N_("Check the log's signatures and proofs in your own browser, without trusting this server."),
        frozenset({"ListTreeHeads"}),
    ),
    # The NGO's self-service screen (kiosk.py): offered to the role that may both change a holder's
    # consent and verify the holder in person, as the matrix has it: the kiosk (a caseworker may not
    # VerifyHolder, an officer may not ChangeConsent).
    Page(
        "kiosk",
        "/kiosk",
        N_("Kiosk mode"),
        N_("The holder's self-service screen: their record's consent, PIN, card and erasure."),
        frozenset({"ChangeConsent"}),
        every=frozenset({"VerifyHolder", "ChangeConsent"}),
    ),
    # The NGO caseworker's pages (caseworker_enrolment.py, caseworker_followup.py).
    Page(
        "enrol",
        "/ngo/enrol",
        N_("Enrol a record"),
        N_("Enrol a person's protected record: their consent and PINs first, then the record and the face."),
        frozenset({"EnrolRecord"}),
    ),
    Page(
        "referrals",
        "/ngo/referrals",
        N_("Referrals"),
        N_("Your organisation's referrals: danger PINs typed and PINs locked."),
        frozenset({"ListReferrals"}),
    ),
    Page(
        "consent",
        "/ngo/consent",
        N_("Withdraw consent"),
        N_("Record a withdrawal the holder asked for, and print its signed receipt."),
        frozenset({"ListReferrals"}),
        every=frozenset({"ChangeConsent"}),
    ),
    Page(
        "erasure",
        "/ngo/erasure",
        N_("Erase a record"),
        N_("Erase a record on the holder's request, with their recovery code, and print the receipt."),
        frozenset({"ListReferrals"}),
        every=frozenset({"EraseRecord"}),
    ),
)


def pages_for(person: Person | None) -> list[Page]:
    return [page for page in PAGES if person is not None and page.offered_to(person)]


def check_page(person: Person, name: str) -> Page:
    """The page `name`, or RoleRefused when the person's role may not use it."""
    page = next(page for page in PAGES if page.name == name)
    if not page.offered_to(person):
        raise RoleRefused(f"role {person.role} may not use the page {page.path}")
    return page


async def identify(
    request: web.Request, gateway: ServiceGateway, certificate: bytes, page: str = ""
) -> Person:
    """Who the service takes the certificate's holder to be (DescribeCaller, as them), kept on the
    request (PERSON) for the page and its refusals; RoleRefused unless their role may use ``page``."""
    person = await asyncio.to_thread(gateway.describe_caller, certificate)
    request[PERSON] = person
    if page:
        check_page(person, page)
    return person


def peer_certificate(request: web.Request) -> bytes:
    """The person's client certificate (DER) from the TLS connection; TLS required one."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise RoleRefused("this connection presented no client certificate")
    return bytes(der)


def certificate_facts(der: bytes) -> tuple[str, str]:
    """The certificate's subject (RFC 4514) and the end of its validity (UTC), as the home page shows."""
    certificate = x509.load_der_x509_certificate(der)
    until = certificate.not_valid_after_utc.astimezone(datetime.UTC)
    return certificate.subject.rfc4514_string(), until.strftime("%Y-%m-%d %H:%M UTC")


class Renderer:
    """Templates with the catalogue's gettext installed, and the response every page is sent as."""

    def __init__(self, catalogue: Catalogue | Languages) -> None:
        # Every shipped language; the one a page renders in is the request's (languages.py).
        self.languages = catalogue if isinstance(catalogue, Languages) else Languages.only(catalogue)
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        install: Callable[..., None] = getattr(self._environment, "install_gettext_callables")  # noqa: B009
        install(
            lambda message: self.catalogue.gettext(message),
            lambda singular, plural, n: self.catalogue.ngettext(singular, plural, n),
            newstyle=True,
        )
        self._environment.globals["role_name"] = lambda role: self.text(ROLE_NAMES.get(role, role))

    @property
    def language(self) -> RequestLanguage:
        """The language of the request being handled, or the deployment's default outside one."""
        chosen = current_language()
        if chosen is not None and self.languages.by_code.get(chosen.language.code) is chosen.language:
            return chosen
        return RequestLanguage(self.languages.default)

    @property
    def catalogue(self) -> Catalogue:
        return self.language.language.catalogue

    def text(self, message: str) -> str:
        return self.catalogue.gettext(message)

    def render(self, template: str, **context: Any) -> str:
        chosen = self.language
        shipped = self.languages.shipped
        context.setdefault("language", chosen.language.tag)
        context.setdefault("direction", chosen.language.direction)
        # The switcher: each language in its own name and script, shown where there is a choice.
        context.setdefault(
            "language_links",
            [(lang, switch_link(lang.code, chosen.back), lang is chosen.language) for lang in shipped]
            if len(shipped) > 1
            else [],
        )
        return self._environment.get_template(template).render(**context)

    def page(
        self, template: str, person: Person | None, current: str, status: int = 200, **context: Any
    ) -> web.Response:
        body = self.render(template, person=person, pages=pages_for(person), current=current, **context)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def refusal(self, error: SafePassageError, person: Person | None = None) -> web.Response:
        status, title, meaning = refusal_page(error)
        return self.page(
            "refusal.html",
            person,
            current="",
            status=status,
            headline=title,
            meaning=meaning,
            detail=str(error),
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def headers_and_refusals(renderer: Renderer) -> Middleware:
    """The middleware every response passes: a refusal page for errors, then the security headers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The request's language, in force while its page (or refusal) renders.
        chosen = renderer.languages.choose(request)
        token = use_language(chosen)
        try:
            response = await handler(request)
        except SafePassageError as error:
            # The person, where the handler had learnt who it is: the page keeps its navigation.
            response = renderer.refusal(error, request.get(PERSON))
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = renderer.refusal(NothingThere(f"no page at {request.path}"))
            response.set_status(error.status)
        finally:
            release_language(token)
        response.headers["Content-Language"] = chosen.language.tag
        response.headers.update(HEADERS)
        response.headers.update(PAGE_HEADERS.get(request.path, {}))
        if request.path == KIOSK_PATH:
            response.headers.update(KIOSK_HEADERS)
        elif request.path.startswith(KIOSK_PATH + "/"):
            response.headers.update(KIOSK_HOLDER_HEADERS)
        return response

    return middleware


class HomePage:
    """GET /: who the service takes the person to be (their certificate), and the pages offered to them."""

    def __init__(self, gateway: ServiceGateway, renderer: Renderer) -> None:
        self._gateway = gateway
        self._renderer = renderer

    async def show(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        person = await identify(request, self._gateway, certificate)
        subject, valid_until = certificate_facts(certificate)
        return self._renderer.page(
            "home.html",
            person,
            current="home",
            subject=subject,
            valid_until=valid_until,
            work_pages=[page for page in pages_for(person) if page.name != "home"],
        )
