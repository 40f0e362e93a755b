"""Certificates, for administrators: issue a person's (or a device's) certificate, list them, revoke one.

GET  /admin/certificates          every certificate the PKI issued, with its status now
POST /admin/certificates/issue    IssueCertificate: a client id, a role, an organisation, a validity;
                                  the page that answers offers the PKCS#12 file (its passphrase shown
                                  once) and the command line's PEM bundle, and is the only place they
                                  exist (certificate_bundle.py)
POST /admin/certificates/revoke   RevokeCertificate: a client id's certificates, or one serial; the
                                  revoked certificate is refused from its next request on

Each action is the administrator's own call (certificate_gateway.py), decided by the matrix
(administrators only) and logged under them. The page is offered to roles that may issue.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from safepassage.console.certificate_bundle import downloads_of
from safepassage.console.certificate_gateway import CertificateGateway
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.pages import PERSON, ROLE_NAMES, Renderer, check_page, identify, peer_certificate
from safepassage.console.refusals import N_, FormIncomplete
from safepassage.console.upload_form import SubmittedForm, read_form

__all__ = ["CertificateAdministration"]

_MAX_FORM_BYTES = 64 * 1024  # ids and a few choices
STATUSES = {
    "valid": N_("valid"),
    "revoked": N_("revoked"),
    "expired": N_("expired"),
    "not yet valid": N_("not yet valid"),
}
KINDS = {"client": N_("client"), "server": N_("server"), "console": N_("console")}


class CertificateAdministration:
    def __init__(self, gateway: ServiceGateway, renderer: Renderer, tokens: FormTokens) -> None:
        self._gateway = gateway
        self._certificates = CertificateGateway(gateway)
        self._renderer = renderer
        self._tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/certificates", self.show),
            web.post("/admin/certificates/issue", self.issue),
            web.post("/admin/certificates/revoke", self.revoke),
        ]

    async def _person(self, request: web.Request, certificate: bytes) -> None:
        await identify(request, self._gateway, certificate)

    async def _checked_form(self, request: web.Request, certificate: bytes) -> SubmittedForm:
        form = await read_form(request, _MAX_FORM_BYTES, self._tokens, certificate)
        return form

    async def show(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        await self._person(request, certificate)
        check_page(request[PERSON], "certificates")
        listed = await asyncio.to_thread(self._certificates.listed, certificate)
        return self._renderer.page(
            "admin_certificates.html",
            request[PERSON],
            current="certificates",
            form_token=self._tokens.issue(certificate),
            certificates=sorted(listed, key=lambda c: (c.status != "valid", c.client_id, c.issued_at)),
            roles=list(ROLE_NAMES.items()),
            statuses=STATUSES,
            kinds=KINDS,
        )

    async def issue(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        role = form.required("role", "the role")
        if role not in ROLE_NAMES:
            raise FormIncomplete("the role is not one of this deployment's roles")
        issued = await asyncio.to_thread(
            self._certificates.issue,
            certificate,
            form.required("client_id", "the account id"),
            role,
            form.text("organisation"),
            _days(form.text("days")),
        )
        downloads = await asyncio.to_thread(downloads_of, issued)
        await self._person(request, certificate)
        return self._renderer.page(
            "admin_certificate_issued.html",
            request[PERSON],
            current="certificates",
            issued=issued.certificate,
            downloads=downloads,
        )

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        certificate = peer_certificate(request)
        form = await self._checked_form(request, certificate)
        target = form.required("target", "the account id or serial to revoke")
        serials = await asyncio.to_thread(self._certificates.revoke, certificate, target)
        await self._person(request, certificate)
        return self._renderer.page(
            "admin_certificate_revoked.html",
            request[PERSON],
            current="certificates",
            target=target,
            serials=serials,
        )


def _days(text: str) -> int:
    try:
        value = int(text or 365)
    except ValueError:
        raise FormIncomplete("the validity is not a number of days") from None
    if value < 1:
        raise FormIncomplete("the validity must be at least one day")
    return value
