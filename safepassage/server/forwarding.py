"""Calls the console makes on a person's behalf: who may forward a certificate, and whose it is.

The console (safepassage/console/) is one more front door to the same service. A person reaches it
with their own client certificate from the deployment's CA (TLS client authentication, as at the
gRPC port); the console then calls this server over a loopback mutual-TLS channel with its own
certificate (the PKI folder's console.pem) and forwards the person's certificate, DER-encoded, in
the ``x-safepassage-forwarded-certificate-bin`` metadata of every call.

`ForwardingAuthenticator.caller` authenticates a call:

* from the pinned console certificate (the one this server read at start-up, by fingerprint; still
  checked for its CA, validity and revocation on every call, so revoking it shuts the console out):
  the caller is the forwarded certificate, checked exactly as a direct caller's is (our CA, validity
  now, clientAuth, a known role, not revoked: a revocation takes effect on the person's next
  request), marked ``via="console"``. No forwarded certificate: Unauthenticated; the console alone
  is nobody, and it has no role, so no row of the authorisation matrix can ever name it;
* from anyone else: the peer's own certificate (safepassage.server.peer).

`check_not_forwarded` refuses a forwarded certificate from any other caller, after that caller is
authenticated, so the refusal is logged under the one who tried (access.py calls it).

    ForwardingError (SafePassageError)
    ├── ConsoleCertificateRejected (Unauthenticated)    the pinned console's certificate is expired or revoked
    ├── NoForwardedCertificate     (Unauthenticated)    the console forwarded no certificate, or not one
    └── ForwardingRefused          (PermissionDenied)   a caller other than the console forwarded one
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from safepassage.core.errors import PermissionDenied, SafePassageError, Unauthenticated
from safepassage.server.certificate_index import fingerprint_of
from safepassage.server.identity import Caller
from safepassage.server.peer import PeerAuthenticator, caller_of_pem, peer_certificate_pem
from safepassage.server.pki_folder import format_serial

__all__ = [
    "FORWARDED_CERTIFICATE",
    "VIA_CONSOLE",
    "ConsoleCertificateRejected",
    "ForwardingAuthenticator",
    "ForwardingError",
    "ForwardingRefused",
    "NoForwardedCertificate",
    "check_not_forwarded",
]

# Binary metadata ("-bin"): the person's certificate, DER.
FORWARDED_CERTIFICATE = "x-safepassage-forwarded-certificate-bin"
# Caller.via of a call the console made for a person.
VIA_CONSOLE = "console"
# A certificate is well under this; anything larger is not one.
_MAX_DER = 16 * 1024


class ForwardingError(SafePassageError):
    """Root of the errors about forwarded certificates."""


class ConsoleCertificateRejected(ForwardingError, Unauthenticated):
    pass


class NoForwardedCertificate(ForwardingError, Unauthenticated):
    pass


class ForwardingRefused(ForwardingError, PermissionDenied):
    pass


@functools.lru_cache(maxsize=64)
def _parsed(pem: bytes) -> tuple[str, x509.Certificate]:
    certificate = x509.load_pem_x509_certificate(pem)
    return fingerprint_of(certificate), certificate


def _fingerprint(pem: bytes) -> str:
    try:
        return _parsed(pem)[0]
    except ValueError:
        return ""  # not a certificate: the peer check says why


def _forwarded(metadata: Iterable[Any]) -> bytes | None:
    """The forwarded certificate's DER from call metadata; None if the call carries none."""
    for item in metadata:
        key, value = item
        if key == FORWARDED_CERTIFICATE:
            return value if isinstance(value, bytes) else str(value).encode()
    return None


@dataclass(frozen=True)
class ForwardingAuthenticator:
    """Who a call's caller is: the peer itself, or the person the pinned console forwards."""

    peers: PeerAuthenticator
    console_fingerprint: str = ""  # "" : no console; nobody may forward

    def caller(self, context: grpc.ServicerContext) -> Caller:
        pem = peer_certificate_pem(context)
        if not self.console_fingerprint or _fingerprint(pem) != self.console_fingerprint:
            return caller_of_pem(pem, self.peers.revocations, self.peers.ca)
        self._check_console(pem)
        der = _forwarded(context.invocation_metadata())
        if der is None:
            raise NoForwardedCertificate("the console forwarded no certificate: it acts only for a person")
        if len(der) > _MAX_DER:
            raise NoForwardedCertificate("the console forwarded something larger than any certificate")
        try:
            person = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        except ValueError:
            raise NoForwardedCertificate("the console forwarded what is not a certificate") from None
        # Exactly the checks a direct caller's certificate passes (peer.py), on every call.
        return replace(caller_of_pem(person, self.peers.revocations, self.peers.ca), via=VIA_CONSOLE)

    def _check_console(self, pem: bytes) -> None:
        _, certificate = _parsed(pem)
        try:
            certificate.verify_directly_issued_by(self.peers.ca)
        except (ValueError, TypeError, InvalidSignature):
            raise ConsoleCertificateRejected("the console's certificate is not of this CA") from None
        now = datetime.datetime.now(datetime.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ConsoleCertificateRejected(
                "the console's certificate is valid only until"
                f" {certificate.not_valid_after_utc.isoformat()}; issue a new one"
                " (`safepassage pki issue-console`) and restart"
            )
        if self.peers.revocations.is_revoked(certificate.serial_number):
            raise ConsoleCertificateRejected(
                f"the console's certificate (serial {format_serial(certificate.serial_number)}) is revoked"
            )


def check_not_forwarded(caller: Caller, context: grpc.ServicerContext) -> None:
    """Refuse a forwarded certificate from anyone but the console (logged under `caller`)."""
    if caller.via:
        return
    if _forwarded(context.invocation_metadata()) is not None:
        raise ForwardingRefused(
            f"{caller.label} forwarded another certificate: only the console acts for a person"
        )
