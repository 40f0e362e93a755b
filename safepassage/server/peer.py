"""The peer of a call: the Caller its client certificate proves, and the mutual-TLS credentials.

The server requires a client certificate issued by the deployment's CA
(`server_credentials`); gRPC refuses anything else at the handshake. A
connection then lives for hours, through expiries and revocations, so
`caller_of` checks the certificate again on every call, and the access
interceptor again for every message of a stream: signed by our CA, within
its validity at that moment, a clientAuth certificate with a known role, not
revoked. Parsing and the signature check are cached per certificate; the
time and revocation checks are not.

An NGO caseworker's or kiosk's certificate must also name its organisation
(see identity.py): one issued before organisations existed would otherwise
act for every organisation, so it is refused.

    PeerError (SafePassageError)
    ├── NoClientCertificate         (Unauthenticated)  the call carries no client certificate
    ├── InvalidClientCertificate    (Unauthenticated)  unparsable, foreign CA, not for clients, bad subject,
    │                                                  no organisation for a role that needs one
    ├── ClientCertificateExpired    (Unauthenticated)  outside its validity
    └── ClientCertificateRevoked    (Unauthenticated)  its serial is in revoked.json
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safepassage.core import certificates
from safepassage.core.errors import SafePassageError, Unauthenticated
from safepassage.core.private_files import read_private
from safepassage.core.signing import SignatureInvalid
from safepassage.server.certificate_index import CLIENT_ID, fingerprint_of
from safepassage.server.identity import ORGANISATION_ID, ORGANISATION_ROLES, Caller, Role
from safepassage.server.pki_folder import PkiNotInitialised, PkiPaths, format_serial, read_ca
from safepassage.server.revocation import RevocationList

# The auth-context property in which gRPC puts the peer's certificate.
PEM_PROPERTY = "x509_pem_cert"


class PeerError(SafePassageError):
    """Root of the errors about a call's peer."""


class NoClientCertificate(PeerError, Unauthenticated):
    pass


class InvalidClientCertificate(PeerError, Unauthenticated):
    pass


class ClientCertificateExpired(PeerError, Unauthenticated):
    pass


class ClientCertificateRevoked(PeerError, Unauthenticated):
    pass


@dataclass(frozen=True)
class _Verified:
    """What a certificate proves once its signature and contents are checked."""

    caller: Caller
    not_before: datetime.datetime
    not_after: datetime.datetime


def _only(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise InvalidClientCertificate(f"the client certificate must have exactly one {label}")
    return values[0].value


def _organisation(name: x509.Name, role: Role) -> str:
    """The subject's organizationIdentifier, or "" for a role that may go without one."""
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    if len(values) > 1:
        raise InvalidClientCertificate("the client certificate names more than one organisation")
    if not values:
        if role in ORGANISATION_ROLES:
            raise InvalidClientCertificate(
                f"the role {role.value} needs an organisation, and the client certificate names none;"
                " issue a new one with `safepassage pki issue ... --organisation ORG`"
            )
        return ""
    value = values[0].value
    if not isinstance(value, str) or not ORGANISATION_ID.fullmatch(value):
        raise InvalidClientCertificate("the client certificate's organisation is not an organisation id")
    return value


@functools.lru_cache(maxsize=4096)
def _verify(pem: bytes, ca: x509.Certificate) -> _Verified:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidClientCertificate("the client certificate cannot be parsed") from None
    try:
        # gRPC has checked the chain already; checking again here means a
        # misconfigured root (say, a public CA bundle) cannot let a stranger in.
        certificates.check_issued_by(certificate, ca)
    except SignatureInvalid:
        raise InvalidClientCertificate(
            "the client certificate is not issued by this deployment's CA"
        ) from None
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        # A server certificate of the same CA must not pass for a client.
        raise InvalidClientCertificate("the certificate is not a client certificate")
    client_id = _only(certificate.subject, NameOID.COMMON_NAME, "common name")
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidClientCertificate("the client certificate's common name is not a client id")
    unit = _only(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "organisational unit (role)")
    try:
        role = Role(unit)
    except ValueError:
        raise InvalidClientCertificate(f"the client certificate's role {unit!r} is unknown") from None
    caller = Caller(
        client_id=client_id,
        role=role,
        serial=certificate.serial_number,
        fingerprint=fingerprint_of(certificate),
        organisation=_organisation(certificate.subject, role),
    )
    return _Verified(caller, certificate.not_valid_before_utc, certificate.not_valid_after_utc)


def _peer_pem(context: grpc.ServicerContext) -> bytes:
    # The stubs say bytes; gRPC gives a list of bytes per property.
    value: object = context.auth_context().get(PEM_PROPERTY)
    if isinstance(value, list | tuple) and value and isinstance(value[0], bytes):
        return value[0]
    if isinstance(value, bytes) and value:
        return value
    raise NoClientCertificate("the call carries no client certificate")


def caller_of(context: grpc.ServicerContext, revocations: RevocationList, ca: x509.Certificate) -> Caller:
    """The authenticated caller of a call, or an Unauthenticated error saying why not."""
    return caller_of_pem(_peer_pem(context), revocations, ca)


def caller_of_pem(pem: bytes, revocations: RevocationList, ca: x509.Certificate) -> Caller:
    """The caller a PEM client certificate proves now (the console forwards one), or Unauthenticated."""
    verified = _verify(pem, ca)
    caller = verified.caller
    now = datetime.datetime.now(datetime.UTC)
    if not verified.not_before <= now <= verified.not_after:
        raise ClientCertificateExpired(
            f"the certificate of {caller.client_id} is valid only from"
            f" {verified.not_before.isoformat()} to {verified.not_after.isoformat()}"
        )
    if revocations.is_revoked(caller.serial):
        raise ClientCertificateRevoked(
            f"the certificate of {caller.client_id} (serial {format_serial(caller.serial)}) is revoked"
        )
    return caller


@dataclass(frozen=True)
class PeerAuthenticator:
    """`caller_of` bound to one PKI folder's CA and revocation list: what an interceptor holds."""

    ca: x509.Certificate
    revocations: RevocationList

    @classmethod
    def from_pki(cls, pki_folder: Path) -> PeerAuthenticator:
        return cls(read_ca(pki_folder), RevocationList.open(pki_folder))

    def caller(self, context: grpc.ServicerContext) -> Caller:
        return caller_of(context, self.revocations, self.ca)


def server_credentials(pki_folder: Path) -> grpc.ServerCredentials:
    """Mutual TLS: the server's certificate, and client certificates required and checked against the CA."""
    paths = PkiPaths(pki_folder)
    try:
        cert, ca = (p.read_bytes() for p in (paths.server_cert, paths.ca_cert))
        # Refused, naming the file, if group or others may read it.
        key = read_private(paths.server_key, "server TLS key", error=PkiNotInitialised)
    except OSError as error:
        raise PkiNotInitialised(
            f"cannot read the server's TLS files in {pki_folder} ({error.strerror}: {error.filename});"
            f" run `safepassage pki init --pki-dir {pki_folder}`"
        ) from None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def client_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ChannelCredentials:
    """What a client connects with: trust our CA, present its own certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def peer_certificate_pem(context: grpc.ServicerContext) -> bytes:
    """The PEM certificate the call was authenticated with (capture statements are checked against it)."""
    return _peer_pem(context)
