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
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from safepassage_core.errors import PermissionDenied
from safepassage_server.identity import Caller, Role

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
    issued_by: str  # the admin's client id
    version: int = VERSION

    def payload(self) -> bytes:
        body = asdict(self)
        body["cameras"] = list(self.cameras)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


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
    admin_cert: x509.Certificate,
    admin_key: ec.EllipticCurvePrivateKey,
    now: float | None = None,
) -> str:
    """An authorisation token signed with an admin's certificate key."""
    if not 0 < valid_for_s <= MAX_VALIDITY_S:
        raise ValueError(f"validity must be between 1 s and {MAX_VALIDITY_S // 86400} days")
    if not cameras or not legal_basis.strip():
        raise ValueError("an authorisation names at least one camera and a legal basis")
    start = int(time.time() if now is None else now)
    admin_id = admin_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    grant = Authorisation(
        authorisation_id=secrets.token_hex(8),
        gallery_id=gallery_id,
        cameras=tuple(cameras),
        legal_basis=legal_basis.strip(),
        not_before=start,
        expires=start + valid_for_s,
        issued_by=str(admin_id),
    )
    payload = grant.payload()
    signature = admin_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    der = admin_cert.public_bytes(encoding=Encoding.DER)
    return ".".join((_b64(payload), _b64(signature), _b64(der)))


class AuthorisationVerifier:
    """Checks tokens against the CA, the revocation list and the call."""

    def __init__(self, ca: x509.Certificate | None, is_revoked: Callable[[int], bool]) -> None:
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
        return grant

    def _decode(self, token: str) -> tuple[Authorisation, x509.Certificate]:
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthorisationRefused(f"authorisation token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            return self._parse(token)
        except AuthorisationRefused:
            raise
        except Exception:
            raise AuthorisationRefused("authorisation token is malformed") from None

    def _parse(self, token: str) -> tuple[Authorisation, x509.Certificate]:
        try:
            payload_b64, signature_b64, cert_b64 = token.split(".")
            payload, signature = _unb64(payload_b64), _unb64(signature_b64)
            admin = x509.load_der_x509_certificate(_unb64(cert_b64))
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise AuthorisationRefused("authorisation token is malformed")
            if body.get("version") != VERSION:
                raise AuthorisationRefused(f"authorisation version {body.get('version')!r} is not supported")
            body["cameras"] = tuple(body["cameras"])
            grant = Authorisation(**body)
        except AuthorisationRefused:
            raise
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise AuthorisationRefused("authorisation token is malformed") from None
        public_key = admin.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AuthorisationRefused("authorisation is signed with an unsupported key type")
        try:
            public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AuthorisationRefused("authorisation signature is not valid (forged or altered)") from None
        return grant, admin

    def _check_admin(self, admin: x509.Certificate) -> None:
        if self._ca is None:
            raise AuthorisationRefused("live identification needs mutual TLS; this server runs in plaintext")
        try:
            admin.verify_directly_issued_by(self._ca)
        except (InvalidSignature, ValueError, TypeError):
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
