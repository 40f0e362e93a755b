"""How the port is secured: mutual TLS against the deployment's PKI, or plaintext on a loopback host only.

With TLS (the default) every caller presents a client certificate of the deployment's CA, and who it
is comes from that certificate (safepassage.server.peer). On a first run with no PKI and
``tls.generate_dev_certs``, a development PKI is made here with one admin client (``dev-admin``), so
that the command line on the same machine works without setup; a deployment runs `safepassage pki
init` instead and sets generate_dev_certs false. Plaintext is refused unless both
``tls.allow_plaintext_on_localhost`` and a loopback listen host say so; every plaintext caller then
acts as the local ``tls.plaintext_role``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from safepassage.core.errors import FailedPrecondition
from safepassage.server.cctv_authorisation import AuthorisationVerifier
from safepassage.server.config import Config
from safepassage.server.console_credentials import ConsoleCredentials, console_credentials
from safepassage.server.forwarding import ForwardingAuthenticator
from safepassage.server.identity import Caller, Role
from safepassage.server.peer import PeerAuthenticator
from safepassage.server.peer import server_credentials as mtls_credentials
from safepassage.server.pki_issuance import Pki

__all__ = ["DEV_ADMIN", "TransportSecurity", "ensure_development_pki", "transport_security"]

log = logging.getLogger(__name__)
# The development PKI's first client, so the CLI works on a fresh machine.
DEV_ADMIN = "dev-admin"


@dataclass(frozen=True)
class TransportSecurity:
    """The port's credentials (None: plaintext), who a call's caller is, and the CCTV grants' checker.

    `console`: the console's credentials, whose certificate alone may forward a person's (None: no
    console; see safepassage.server.forwarding).
    """

    credentials: grpc.ServerCredentials | None
    authenticate: Callable[[grpc.ServicerContext], Caller]
    cctv: AuthorisationVerifier
    console: ConsoleCredentials | None = None


def transport_security(config: Config) -> TransportSecurity:
    """Mutual TLS against the deployment's PKI (made on first run in development), or checked plaintext."""
    if not config.tls.enabled:
        if not (config.tls.allow_plaintext_on_localhost and _is_loopback(config.listen.host)):
            raise FailedPrecondition(
                "TLS is off: plaintext is allowed only with tls.allow_plaintext_on_localhost"
                " on a loopback host"
            )
        log.warning(
            "PLAINTEXT on %s: no encryption, no client certificates; every caller acts as local %s",
            config.listen.host,
            config.tls.plaintext_role.value,
        )
        if config.console.enabled:
            log.warning("the console is off: it logs people in with client certificates, and TLS is off")
        local = Caller("local", config.tls.plaintext_role, 0, "")
        return TransportSecurity(
            None, lambda context: local, AuthorisationVerifier(None, lambda serial: False)
        )
    ensure_development_pki(config)
    authenticator = PeerAuthenticator.from_pki(config.pki_dir)
    verifier = AuthorisationVerifier(authenticator.ca, authenticator.revocations.is_revoked)
    console = console_credentials(config)
    # The console's certificate, pinned: the one peer that may act for the person it forwards.
    forwarding = ForwardingAuthenticator(authenticator, console.fingerprint if console else "")
    return TransportSecurity(mtls_credentials(config.pki_dir), forwarding.caller, verifier, console)


def ensure_development_pki(config: Config) -> None:
    """Make a development PKI with a dev-admin client if the folder has none and config allows it."""
    if (config.pki_dir / "ca.pem").exists():
        return
    if not config.tls.generate_dev_certs:
        raise FailedPrecondition(
            f"no PKI in {config.pki_dir}; run `safepassage pki init --pki-dir {config.pki_dir}`"
        )
    pki = Pki.init(config.pki_dir, config.tls.server_names, exist_ok=True, development=True)
    pki.issue_client(DEV_ADMIN, Role.ADMIN)
    log.warning("made a development PKI in %s with client %s (role admin)", config.pki_dir, DEV_ADMIN)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
