"""The console's HTTPS server: client certificates of the deployment's CA required, in a thread of its own.

`Console(settings)` reads the message catalogue and binds its port (0: a free one) at once, so a
taken port or a missing catalogue stops the server's start; `start()` serves on an asyncio loop in
its own thread and logs the URL; `stop()` ends it. The TLS handshake requires a client certificate
issued by the deployment's CA (the browser's person); the handshake cannot see revocation, so every
page asks the service, which checks it on every call (server/forwarding.py).

Routes: the home page, the officer desk and its webcam capture, CCTV review, administration
(galleries, certificates, authorisations, fishing alerts), kiosk mode (kiosk.py), the holder check at
the desk (holder_desk.py), the stylesheet and the capture, kiosk and head-turn pages' scripts.
Every response passes the refusal and security-header middleware (pages.py). Nothing is
logged per request: the service's transparency log records every action, under the person.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from pathlib import Path

from aiohttp import web

from safepassage.console.admin_certificates import CertificateAdministration
from safepassage.console.admin_galleries import GalleryAdministration
from safepassage.console.admin_oversight import OversightPages
from safepassage.console.auditor_view import AuditorPages
from safepassage.console.capture import DeskCapture
from safepassage.console.caseworker_enrolment import CaseworkerEnrolment
from safepassage.console.caseworker_followup import CaseworkerFollowUp
from safepassage.console.document_desk import DocumentDesk
from safepassage.console.form_tokens import FormTokens
from safepassage.console.gateway import ServiceGateway
from safepassage.console.head_turn import HeadTurn
from safepassage.console.hit_review import HitReviewPages
from safepassage.console.holder_desk import HolderDesk
from safepassage.console.holder_step import HolderStepSeal
from safepassage.console.kiosk import KioskPages
from safepassage.console.languages import Languages, LanguageSwitch
from safepassage.console.officer_desk import OfficerDesk
from safepassage.console.pages import HomePage, Renderer, headers_and_refusals
from safepassage.console.refusals import NotPossibleNow
from safepassage.console.settings import ConsoleSettings

__all__ = ["Console"]

log = logging.getLogger(__name__)
STYLESHEET = Path(__file__).resolve().parent / "static" / "console.css"
_START_TIMEOUT_S = 30.0
# The body of a desk search beyond its image: the fields of the form.
_FORM_ALLOWANCE = 1024 * 1024


class Console:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._renderer = Renderer(Languages.load(settings.language))
        self._stylesheet = STYLESHEET.read_bytes()
        self._tls = _tls_context(settings)
        self._socket = _bind(settings.host, settings.port)
        self.port: int = self._socket.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gateway: ServiceGateway | None = None
        # The forms' CSRF tokens (tests mint one to show that the service, not the page, refuses).
        self.form_tokens = FormTokens(settings.form_lifetime_s)

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"https://{host}:{self.port}/"

    def _application(self, gateway: ServiceGateway) -> web.Application:
        tokens = self.form_tokens
        app = web.Application(
            middlewares=[headers_and_refusals(self._renderer)],
            client_max_size=self.settings.max_upload_bytes + _FORM_ALLOWANCE,
        )
        desk = OfficerDesk(gateway, self._renderer, tokens, self.settings.max_upload_bytes + _FORM_ALLOWANCE)
        home = HomePage(gateway, self._renderer)
        app.add_routes([web.get("/", home.show), web.get("/static/console.css", self._css), *desk.routes()])
        upload = self.settings.max_upload_bytes + _FORM_ALLOWANCE
        app.add_routes(GalleryAdministration(gateway, self._renderer, tokens, upload).routes())
        app.add_routes(CertificateAdministration(gateway, self._renderer, tokens).routes())
        app.add_routes(OversightPages(gateway, self._renderer, tokens).routes())
        app.add_routes(AuditorPages(gateway, self._renderer).routes())
        app.add_routes(DocumentDesk(gateway, self._renderer, tokens, upload).routes())
        app.add_routes(DeskCapture(gateway, self._renderer, tokens, desk, upload).routes())
        app.add_routes(HitReviewPages(gateway, self._renderer, tokens).routes())
        # The head-turn check's script and calls, shared by the kiosk and the caseworker's enrolment.
        head_turn = HeadTurn(gateway)
        app.add_routes(head_turn.routes())
        kiosk = KioskPages(gateway, self._renderer, self.settings.kiosk_idle_s, head_turn, upload)
        app.add_routes(kiosk.routes())
        app.add_routes(HolderDesk(gateway, self._renderer, tokens, head_turn, upload).routes())
        seal = HolderStepSeal(self.settings.form_lifetime_s)
        enrolment = CaseworkerEnrolment(gateway, self._renderer, tokens, seal, head_turn, upload)
        app.add_routes(enrolment.routes())
        app.add_routes(CaseworkerFollowUp(gateway, self._renderer, tokens).routes())
        app.add_routes(LanguageSwitch(self._renderer.languages).routes())
        return app

    async def _css(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._stylesheet, content_type="text/css", charset="utf-8")

    def start(self) -> None:
        """Serve in a thread of its own; returns once the port answers."""
        self._gateway = ServiceGateway(self.settings)
        app = self._application(self._gateway)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
            try:
                loop.run_until_complete(runner.setup())
                site = web.SockSite(runner, self._socket, ssl_context=self._tls)
                loop.run_until_complete(site.start())
            except BaseException as error:  # handed to start(), which raises it
                failures.append(error)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="console", daemon=True)
        self._thread.start()
        if not started.wait(_START_TIMEOUT_S):
            raise NotPossibleNow("the console did not start in time")
        if failures:
            raise failures[0]
        log.info("console: %s (log in with a client certificate of this deployment's CA)", self.url)

    def stop(self) -> None:
        """Stop serving (in-flight pages end); safe to call twice, or without start()."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_START_TIMEOUT_S)
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        self._socket.close()


def _tls_context(settings: ConsoleSettings) -> ssl.SSLContext:
    """TLS 1.2+, the server's certificate, and a client certificate of the deployment's CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.server_cert_file, settings.server_key_file)
    except (OSError, ssl.SSLError) as error:
        raise NotPossibleNow(
            f"the console cannot load the server's TLS certificate and key: {error}"
        ) from None
    context.load_verify_locations(cadata=settings.ca_pem.decode("ascii"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _bind(host: str, port: int) -> socket.socket:
    """The console's listening socket (no SO_REUSEPORT: a second server may not share the port)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as error:
        raise NotPossibleNow(
            f"cannot listen on {host}:{port} for the console ({error.strerror or error});"
            " set console.port, or console.enabled = false"
        ) from None
