"""A device's signed word that it captured a face image live: so the server never takes a vector, or a
replayed image, for a face in front of the device now.

A kiosk or an officer's device that captures a face for a holder-proof
request signs a *capture statement* with the private key of its own mTLS
client certificate (EC P-256 with ECDSA-SHA256 today; any EC curve, or
Ed25519, also works). The server checks it against the certificate the call
was authenticated with, so only the calling device can vouch for the image,
and only for that image, only once, and only for a short time.

Byte layout, version 1 (ASCII throughout)::

    b"SPCS1." + base64url(body) + b"." + base64url(signature)

base64url is RFC 4648 section 5 without padding. ``body`` is canonical JSON
(keys sorted, no spaces, ASCII only) of exactly these fields::

    captured_at   int     unix seconds at the capture, by the device's clock
    device        str     the device's client id (its certificate's CN)
    image_sha256  str     SHA-256 of the exact image bytes sent, 64 lower-case hex digits
    liveness      str     "head_turn" | "supervised" | "none" (see Liveness)
    nonce         str     16 random bytes, 32 lower-case hex digits

The signature covers every byte before the second dot (the version marker
and the encoded body): ECDSA-SHA256 in DER for an EC key, the 64 raw bytes
for Ed25519. The marker also keeps these signatures apart from the TLS
handshake signatures the same key makes (TLS 1.3 signs a context string
that starts with 64 spaces). A statement longer than MAX_STATEMENT_BYTES is
refused before it is decoded; a body that is not in canonical form is
refused, so a statement has exactly one encoding.

Checks run in the order size -> layout -> signature -> device -> image ->
freshness -> single use, and each failure raises its own error
(:mod:`safepassage.credential.errors`); nothing returns False. Freshness and single
use go together: a :class:`NonceCache` remembers each nonce for as long as its
statement could still pass the freshness check, and no longer.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import heapq
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass

from cryptography.x509.oid import NameOID

from safepassage.core import certificates, signing
from safepassage.credential.errors import (
    CaptureDeviceMismatch,
    CaptureImageMismatch,
    CaptureKeyError,
    CaptureNotFresh,
    CaptureReplayCacheFull,
    CaptureReplayed,
    CaptureSignatureInvalid,
    LivenessNotAccepted,
    MalformedCaptureStatement,
)

__all__ = [
    "MAX_STATEMENT_BYTES",
    "STATEMENT_MARKER",
    "CaptureStatement",
    "Liveness",
    "NonceCache",
    "require_liveness",
    "sign_capture",
    "verify_capture",
]

STATEMENT_MARKER = b"SPCS1."
MAX_STATEMENT_BYTES = 1024
DEFAULT_NONCE_CAPACITY = 65536
_NONCE_SIZE = 16
_FIELDS = frozenset({"captured_at", "device", "image_sha256", "liveness", "nonce"})
_DEVICE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # a client id, as server.pki_issuance issues them
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NONCE_HEX = re.compile(r"[0-9a-f]{32}")
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_MAX_TIME = 2**40  # far beyond any real clock; keeps float arithmetic exact


class Liveness(enum.StrEnum):
    """What the device checked, beyond capturing a face, that the face is a live person present now."""

    HEAD_TURN = "head_turn"  # a kiosk's active challenge (safepassage.camera_edge.liveness) was passed
    SUPERVISED = "supervised"  # an officer watched the holder being photographed
    NONE = "none"  # nothing: an unattended capture with no challenge


@dataclass(frozen=True)
class CaptureStatement:
    """A verified capture statement: which device captured which image (by hash), when, and how."""

    device: str
    image_sha256: str
    captured_at: int
    liveness: Liveness
    nonce: str


class NonceCache:
    """The nonces of accepted statements, each kept until its statement could no longer pass freshness.

    Thread-safe; at most ``capacity`` nonces are held. When it is full of
    nonces that are all still live, new statements are refused
    (CaptureReplayCacheFull, retryable) rather than an old nonce forgotten,
    which would let its statement be replayed. One cache should serve one
    ``max_age_s``: a nonce is remembered for the age limit of the call that used it.
    """

    def __init__(self, capacity: int = DEFAULT_NONCE_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a nonce cache needs room for at least one nonce")
        self.capacity = capacity
        self._until: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def use(self, nonce: bytes, until: float, now: float) -> None:
        """Record ``nonce`` as used until ``until``; CaptureReplayed if it is already recorded."""
        with self._lock:
            self._forget_before(now)
            if nonce in self._until:
                raise CaptureReplayed("the capture statement was used before; capture the face again")
            if len(self._until) >= self.capacity:
                raise CaptureReplayCacheFull(
                    "too many capture statements within the freshness window; retry shortly"
                )
            self._until[nonce] = until
            heapq.heappush(self._expiry, (until, nonce))

    def _forget_before(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            del self._until[nonce]

    def __len__(self) -> int:
        with self._lock:
            return len(self._until)

    def __bool__(self) -> bool:
        return True  # an empty cache is still a cache: `nonces or NonceCache()` must not replace it


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: bytes, what: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedCaptureStatement(f"the capture statement's {what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedCaptureStatement(f"the capture statement's {what} is not base64url") from None
    if _b64(data) != text:  # stray bits in the last character: another encoding of the same bytes
        raise MalformedCaptureStatement(f"the capture statement's {what} is not canonical base64url")
    return data


def _canonical(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_capture(
    key_pem: bytes, client_id: str, image: bytes, liveness: Liveness, now: float | None = None
) -> bytes:
    """The statement that device ``client_id`` captured ``image`` now, signed with its certificate's key."""
    if not isinstance(client_id, str) or not _DEVICE.fullmatch(client_id):
        raise MalformedCaptureStatement("cannot sign a capture statement: the device id is not a client id")
    try:
        level = Liveness(liveness)
    except ValueError:
        raise MalformedCaptureStatement("cannot sign a capture statement: unknown liveness") from None
    captured = time.time() if now is None else now
    if not math.isfinite(captured) or not 0 <= captured < _MAX_TIME:
        raise MalformedCaptureStatement("cannot sign a capture statement: the capture time is out of range")
    key = signing.parse_certificate_signing_key(key_pem, "the device key", CaptureKeyError)
    body = {
        "captured_at": math.floor(captured),
        "device": client_id,
        "image_sha256": hashlib.sha256(image).hexdigest(),
        "liveness": level.value,
        "nonce": os.urandom(_NONCE_SIZE).hex(),
    }
    signed = STATEMENT_MARKER + _b64(_canonical(body))
    return signed + b"." + _b64(signing.sign(key, signed))


def _parse(statement: bytes) -> tuple[bytes, bytes, CaptureStatement]:
    """The signed part, the signature and the fields; MalformedCaptureStatement for anything else."""
    if not isinstance(statement, bytes):
        raise MalformedCaptureStatement("a capture statement must be bytes")
    if len(statement) > MAX_STATEMENT_BYTES:
        raise MalformedCaptureStatement(f"the capture statement is longer than {MAX_STATEMENT_BYTES} bytes")
    if not statement.startswith(STATEMENT_MARKER):
        raise MalformedCaptureStatement("not a capture statement of a version this server reads")
    parts = statement[len(STATEMENT_MARKER) :].split(b".")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise MalformedCaptureStatement("the capture statement does not have a body and a signature")
    body_bytes = _unb64(parts[0], "body")
    signature = _unb64(parts[1], "signature")
    try:
        body = json.loads(body_bytes.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedCaptureStatement("the capture statement's body is not JSON") from None
    if not isinstance(body, dict) or set(body) != _FIELDS or _canonical(body) != body_bytes:
        raise MalformedCaptureStatement("the capture statement's body does not have the version-1 fields")
    captured_at, device, digest = body["captured_at"], body["device"], body["image_sha256"]
    liveness, nonce = body["liveness"], body["nonce"]
    if type(captured_at) is not int or not 0 <= captured_at < _MAX_TIME:
        raise MalformedCaptureStatement("the capture statement's time is not a unix time in seconds")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise MalformedCaptureStatement("the capture statement's device is not a client id")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise MalformedCaptureStatement("the capture statement's image hash is not a SHA-256 in hex")
    if not isinstance(nonce, str) or not _NONCE_HEX.fullmatch(nonce):
        raise MalformedCaptureStatement("the capture statement's nonce is not 16 bytes in hex")
    try:
        level = Liveness(liveness)
    except ValueError:
        raise MalformedCaptureStatement("the capture statement names an unknown liveness check") from None
    fields = CaptureStatement(
        device=device, image_sha256=digest, captured_at=captured_at, liveness=level, nonce=nonce
    )
    return statement[: len(STATEMENT_MARKER) + len(parts[0])], signature, fields


def _check_signature(certificate: certificates.Certificate, signed: bytes, signature: bytes) -> None:
    key = certificates.verifying_key(certificate, "the calling device's certificate", CaptureKeyError)
    try:
        signing.verify(key, signature, signed)
    except signing.SignatureInvalid:
        raise CaptureSignatureInvalid(
            "the capture statement is not signed by the calling device's certificate key"
        ) from None


def verify_capture(
    statement: bytes,
    image: bytes,
    certificate_pem: bytes,
    client_id: str,
    now: float,
    nonces: NonceCache,
    max_age_s: float = 120,
    max_skew_s: float = 30,
) -> CaptureStatement:
    """Check that the calling device (``certificate_pem``, ``client_id``) captured ``image`` just now.

    ``certificate_pem`` must be the certificate the call was authenticated
    with, and ``client_id`` the caller's id taken from it. The statement's
    nonce is spent only when every other check passes.
    """
    signed, signature, fields = _parse(statement)
    certificate = certificates.parse_pem(certificate_pem, "the calling device's certificate", CaptureKeyError)
    _check_signature(certificate, signed, signature)
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if fields.device != client_id or (names and names != [client_id]):
        raise CaptureDeviceMismatch("the capture statement was made by another device than the caller")
    if hashlib.sha256(image).hexdigest() != fields.image_sha256:
        raise CaptureImageMismatch("the image is not the one the capture statement was signed for")
    if now - fields.captured_at > max_age_s:
        raise CaptureNotFresh(f"the capture is more than {max_age_s:g} s old; capture the face again")
    if fields.captured_at - now > max_skew_s:
        raise CaptureNotFresh(
            f"the capture is dated more than {max_skew_s:g} s after the server's clock;"
            " check the device's clock"
        )
    nonces.use(bytes.fromhex(fields.nonce), fields.captured_at + max_age_s, now)
    return fields


def require_liveness(statement: CaptureStatement, accepted: frozenset[Liveness]) -> None:
    """LivenessNotAccepted unless the device vouches for one of the ``accepted`` liveness checks."""
    if statement.liveness not in accepted:
        if not accepted:
            raise LivenessNotAccepted("this operation accepts no capture")
        wanted = " or ".join(sorted(level.value for level in accepted))
        raise LivenessNotAccepted(f"this needs a capture whose device vouches for liveness {wanted}")
