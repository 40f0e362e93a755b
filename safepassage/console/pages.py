"""The console's pages: which exist, who is offered each, how they are rendered, and their headers.

A page is offered to a person when their role may call one of the operations it needs, as the
service's own answer (DescribeCaller: the authorisation matrix) says; a page refused renders the
refusal page with 403. Offering is not granting: every action on a page is a call the service
decides again. Later pages (CCTV review, administration) join `PAGES` with their handlers.

Every response, refusals included, carries the same headers: a Content-Security-Policy that allows
the console's own stylesheet, images inside the page (a probe crop) and forms to itself, and nothing
else (no script at all, no frame, no third-party request); X-Frame-Options DENY; no caching (pages
show biometric answers); no referrer. The console sets no cookie. Templates are escaped
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
from safepassage.console.refusals import N_, NothingThere, RoleRefused, refusal_page
from safepassage.core.errors import SafePassageError

__all__ = [
    "HEADERS",
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

    def offered_to(self, person: Person) -> bool:
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
)


def pages_for(person: Person | None) -> list[Page]:
    return [page for page in PAGES if person is not None and page.offered_to(person)]


def check_page(person: Person, name: str) -> Page:
    """The page `name`, or RoleRefused when the person's role may not use it."""
    page = next(page for page in PAGES if page.name == name)
    if not page.offered_to(person):
        raise RoleRefused(f"role {person.role} may not use the page {page.path}")
    return page


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

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        install: Callable[..., None] = getattr(self._environment, "install_gettext_callables")  # noqa: B009
        install(catalogue.gettext, catalogue.ngettext, newstyle=True)
        self._environment.globals["role_name"] = lambda role: catalogue.gettext(ROLE_NAMES.get(role, role))
        self._environment.globals["language"] = catalogue.language.replace("_", "-")

    def text(self, message: str) -> str:
        return self.catalogue.gettext(message)

    def render(self, template: str, **context: Any) -> str:
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
        response.headers.update(HEADERS)
        return response

    return middleware


class HomePage:
    """GET /: who the service takes the person to be (their certificate), and the pages offered to them."""

    def __init__(self, gateway: ServiceGateway, renderer: Renderer) -> None:
        self._gateway = gateway
        self._renderer = renderer

    async def show(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        person = await asyncio.to_thread(self._gateway.describe_caller, certificate)
        request[PERSON] = person
        subject, valid_until = certificate_facts(certificate)
        return self._renderer.page(
            "home.html",
            person,
            current="home",
            subject=subject,
            valid_until=valid_until,
            work_pages=[page for page in pages_for(person) if page.name != "home"],
        )
