"""What the console needs from the deployment's PKI: its own certificate, the CA, the server's TLS files.

The console (safepassage/console/) serves HTTPS with the server's own certificate and key, asks every
browser for a client certificate of the deployment's CA, and calls the gRPC port as itself with the
PKI folder's console.pem / console-key.pem, forwarding the person's certificate
(safepassage.server.forwarding). The server pins console.pem by its fingerprint at start-up.

A development PKI (the server's first run) gets its console certificate on the first start that
lacks one; a deployment's PKI keeps its CA key elsewhere, so there `safepassage pki issue-console`
makes it, and until then the console stays off with a warning naming that command. Without TLS there
are no certificates to log in with, so the console stays off too.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from safepassage.core.private_files import read_private
from safepassage.server.certificate_index import fingerprint_of
from safepassage.server.config import Config
from safepassage.server.pki_folder import PkiCorrupt, PkiNotInitialised, PkiPaths
from safepassage.server.pki_issuance import Pki

__all__ = ["ConsoleCredentials", "console_credentials"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsoleCredentials:
    """The console's certificate and key, its pin, and the files its HTTPS side serves with."""

    ca_pem: bytes
    server_cert_file: Path
    server_key_file: Path
    console_cert_pem: bytes
    console_key_pem: bytes = field(repr=False)
    fingerprint: str  # sha256 of console.pem's DER: the one peer allowed to forward
    server_name: str  # a name the server's certificate holds, for the loopback channel's TLS check


def console_credentials(config: Config) -> ConsoleCredentials | None:
    """The console's credentials, made first in a development PKI; None (logged) when it stays off."""
    if not config.console.enabled:
        return None
    if not config.tls.enabled:
        log.warning("the console is off: it logs people in with client certificates, and TLS is off")
        return None
    paths = PkiPaths(config.pki_dir)
    if not paths.console_cert.exists():
        if not paths.development.exists():
            log.warning(
                "the console is off: no console certificate in %s; make one with"
                " `safepassage pki issue-console --pki-dir %s` and restart",
                config.pki_dir,
                config.pki_dir,
            )
            return None
        Pki.open(config.pki_dir).issue_console()
        log.info("made the console's certificate in the development PKI %s", config.pki_dir)
    try:
        cert_pem = paths.console_cert.read_bytes()
        server_pem = paths.server_cert.read_bytes()
        ca_pem = paths.ca_cert.read_bytes()
    except OSError as error:
        raise PkiNotInitialised(f"cannot read {error.filename}: {error.strerror}") from None
    key_pem = read_private(paths.console_key, "console key", error=PkiNotInitialised)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        server = x509.load_pem_x509_certificate(server_pem)
    except ValueError:
        raise PkiCorrupt(f"{paths.console_cert} or {paths.server_cert} is not a PEM certificate") from None
    return ConsoleCredentials(
        ca_pem=ca_pem,
        server_cert_file=paths.server_cert,
        server_key_file=paths.server_key,
        console_cert_pem=cert_pem,
        console_key_pem=key_pem,
        fingerprint=fingerprint_of(certificate),
        server_name=_name_of(server),
    )


def _name_of(server: x509.Certificate) -> str:
    """The server certificate's first DNS name (else IP): what the loopback channel checks it for."""
    try:
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PkiCorrupt("the server's certificate names no host (no subjectAltName)") from None
    dns = names.get_values_for_type(x509.DNSName)
    if dns:
        return dns[0]
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        address
        for address in names.get_values_for_type(x509.IPAddress)
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    if not addresses:
        raise PkiCorrupt("the server's certificate names no host")
    return str(addresses[0])
