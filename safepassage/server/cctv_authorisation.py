"""Signed authorisations for live CCTV identification.

A camera (role cctv_edge) may search a watchlist only under an authorisation
that an admin signed with the key of their client certificate, naming the
gallery, the cameras, the legal basis and a validity window. The edge sends
the token in the ``x-safepassage-authorisation`` metadata of its stream; the
server checks it at the start of the stream and for every message, so an
authorisation that expires mid-stream stops the stream.

Token: ``base64url(payload JSON) . base64url(ECDSA-P256-SHA256 signature) .
base64url(the admin's certificate, DER)``. The certificate must be issued by
the deployment's CA, carry the admin role and not be revoked; the payload's
version marks the format.

The signer is the certificate that signed, whatever the payload says: its
``issued_by`` must be that certificate's client id (an admin cannot credit, or
blame, another admin), and the verified authorisation carries the certificate's
serial (``signer_serial``) for the transparency log. The validity limits that
``sign`` applies (a window of at most 31 days that ends after it starts) are
checked again on every verification: a token signed by other means gets no
more than the command would have given.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TypeVar

from cryptography.x509.oid import NameOID

from safepassage.core import certificates, signing
from safepassage.core.certificates import Certificate
from safepassage.core.errors import PermissionDenied
from safepassage.server.certificate_index import CLIENT_ID
from safepassage.server.identity import Caller, Role
from safepassage.server.pki_folder import format_serial

METADATA_KEY = "x-safepassage-authorisation"
# A real token is about 1 KB (payload, signature, one certificate).
MAX_TOKEN_CHARS = 16_384
VERSION = 1
MAX_VALIDITY_S = 31 * 24 * 3600


class AuthorisationRefused(PermissionDenied):
    """A CCTV stream's authorisation is missing, malformed, forged, expired or does not cover the call."""


@dataclass(frozen=True)
class Authorisation:
    authorisation_id: str
    gallery_id: str
    cameras: tuple[str, ...]
    legal_basis: str
    not_before: int  # seconds since the epoch
    expires: int
    issued_by: str  # the admin's client id: the common name of the certificate that signed
    version: int = VERSION
    # Not signed: the serial (hex, as the PKI shows it) of the certificate that signed, set
    # by the verifier from that certificate. "" in an authorisation not verified yet.
    signer_serial: str = ""

    def payload(self) -> bytes:
        body = asdict(self)
        del body["signer_serial"]
        body["cameras"] = list(self.cameras)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def check_window(not_before: int, expires: int) -> None:
    """Refuse a validity window that `sign` would never make: empty, reversed or over 31 days."""
    if not 0 < expires - not_before <= MAX_VALIDITY_S:
        raise AuthorisationRefused(
            f"an authorisation's validity must end after it starts and last at most"
            f" {MAX_VALIDITY_S // 86400} days"
        )


def signer_id(certificate: Certificate) -> str:
    """The client id of a signing certificate: its one common name, which must be a client id."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) or not CLIENT_ID.fullmatch(names[0].value):
        raise AuthorisationRefused("authorisation's signing certificate does not name one client id")
    return names[0].value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    *,
    gallery_id: str,
    cameras: Sequence[str],
    legal_basis: str,
    valid_for_s: int,
    admin_cert: Certificate,
    admin_key: signing.EcSigningKey,
    now: float | None = None,
) -> str:
    """An authorisation token signed with an admin's certificate key."""
    if not 0 < valid_for_s <= MAX_VALIDITY_S:
        raise ValueError(f"validity must be between 1 s and {MAX_VALIDITY_S // 86400} days")
    if not cameras or not legal_basis.strip():
        raise ValueError("an authorisation names at least one camera and a legal basis")
    if not certificates.holds_key(admin_cert, admin_key):
        raise ValueError("the key is not the key of the admin certificate")
    try:
        admin_id = signer_id(admin_cert)
    except AuthorisationRefused as error:
        raise ValueError(str(error)) from None
    start = int(time.time() if now is None else now)
    grant = Authorisation(
        authorisation_id=secrets.token_hex(8),
        gallery_id=gallery_id,
        cameras=tuple(cameras),
        legal_basis=legal_basis.strip(),
        not_before=start,
        expires=start + valid_for_s,
        issued_by=admin_id,
    )
    payload = grant.payload()
    signature = signing.sign(admin_key, payload)
    return ".".join((_b64(payload), _b64(signature), _b64(certificates.to_der(admin_cert))))


class AuthorisationVerifier:
    """Checks tokens against the CA, the revocation list and the call."""

    def __init__(self, ca: Certificate | None, is_revoked: Callable[[int], bool]) -> None:
        """`ca` None (a plaintext development server) refuses every authorisation."""
        self._ca = ca
        self._is_revoked = is_revoked

    def verify(
        self, token: str | None, caller: Caller, gallery_id: str, now: float | None = None
    ) -> Authorisation:
        if caller.role is not Role.CCTV_EDGE:
            raise AuthorisationRefused("authorisations are for cctv_edge clients")
        if not token:
            raise AuthorisationRefused(
                f"live identification needs a signed authorisation in the {METADATA_KEY} metadata"
            )
        grant, admin = self._decode(token)
        self._check_admin(admin)
        signer = signer_id(admin)
        if grant.issued_by != signer:
            raise AuthorisationRefused(
                f"authorisation {grant.authorisation_id} is signed by {signer}'s certificate"
                " but names another admin as its signer"
            )
        check_window(grant.not_before, grant.expires)
        clock = time.time() if now is None else now
        if clock < grant.not_before:
            raise AuthorisationRefused(f"authorisation {grant.authorisation_id} is not valid yet")
        if clock >= grant.expires:
            raise AuthorisationRefused(f"authorisation {grant.authorisation_id} expired")
        if grant.gallery_id != gallery_id:
            raise AuthorisationRefused(
                f"authorisation {grant.authorisation_id} covers gallery {grant.gallery_id!r},"
                f" not {gallery_id!r}"
            )
        if caller.client_id not in grant.cameras:
            raise AuthorisationRefused(
                f"authorisation {grant.authorisation_id} does not name camera {caller.client_id!r}"
            )
        return replace(grant, signer_serial=format_serial(admin.serial_number))

    def _decode(self, token: str) -> tuple[Authorisation, Certificate]:
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthorisationRefused(f"authorisation token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            return self._parse(token)
        except AuthorisationRefused:
            raise
        except Exception:
            raise AuthorisationRefused("authorisation token is malformed") from None

    def _parse(self, token: str) -> tuple[Authorisation, Certificate]:
        try:
            payload_b64, signature_b64, cert_b64 = token.split(".")
            payload, signature = _unb64(payload_b64), _unb64(signature_b64)
            admin = certificates.parse_der(_unb64(cert_b64), "the authorisation's certificate", ValueError)
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise AuthorisationRefused("authorisation token is malformed")
            if body.get("version") != VERSION:
                raise AuthorisationRefused(f"authorisation version {body.get('version')!r} is not supported")
            grant = _grant_of(body)
        except AuthorisationRefused:
            raise
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise AuthorisationRefused("authorisation token is malformed") from None
        public_key = admin.public_key()
        if not isinstance(public_key, signing.EcVerifyingKey):
            raise AuthorisationRefused("authorisation is signed with an unsupported key type")
        try:
            signing.verify(public_key, signature, payload)
        except signing.SignatureInvalid:
            raise AuthorisationRefused("authorisation signature is not valid (forged or altered)") from None
        return grant, admin

    def _check_admin(self, admin: Certificate) -> None:
        if self._ca is None:
            raise AuthorisationRefused("live identification needs mutual TLS; this server runs in plaintext")
        try:
            certificates.check_issued_by(admin, self._ca)
        except signing.SignatureInvalid:
            raise AuthorisationRefused(
                "authorisation is signed by a certificate this deployment's CA did not issue"
            ) from None
        units = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if not units or units[0].value != Role.ADMIN.value:
            raise AuthorisationRefused("authorisation is not signed by an admin")
        now = time.time()
        if not admin.not_valid_before_utc.timestamp() <= now < admin.not_valid_after_utc.timestamp():
            raise AuthorisationRefused("authorisation's admin certificate is expired or not yet valid")
        if self._is_revoked(admin.serial_number):
            raise AuthorisationRefused("authorisation's admin certificate is revoked")


_T = TypeVar("_T")
_PAYLOAD_FIELDS = frozenset(field.name for field in fields(Authorisation)) - {"signer_serial"}


def _field(body: dict[str, object], name: str, kind: type[_T]) -> _T:
    value = body.get(name)
    # bool is an int to Python, never to the format; a float or text time is not a time.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise AuthorisationRefused("authorisation token is malformed")
    return value


def _grant_of(body: dict[str, object]) -> Authorisation:
    """The payload as an Authorisation: exactly the payload's fields, each of its JSON type."""
    if set(body) != _PAYLOAD_FIELDS:
        raise AuthorisationRefused("authorisation token is malformed")
    cameras = _field(body, "cameras", list)
    if not all(isinstance(camera, str) for camera in cameras):
        raise AuthorisationRefused("authorisation token is malformed")
    return Authorisation(
        authorisation_id=_field(body, "authorisation_id", str),
        gallery_id=_field(body, "gallery_id", str),
        cameras=tuple(str(camera) for camera in cameras),
        legal_basis=_field(body, "legal_basis", str),
        not_before=_field(body, "not_before", int),
        expires=_field(body, "expires", int),
        issued_by=_field(body, "issued_by", str),
        version=_field(body, "version", int),
    )
