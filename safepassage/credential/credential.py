"""A holder credential: an issuer-signed, reader-sealed face template the holder carries as a QR code.

An NGO issues it at enrolment; an officer's device that trusts the issuer key
and holds one of the reader keys verifies it offline and compares it 1:1 with
a live capture. Whoever merely reads the QR code learns the credential id, the
issuer key id, the validity dates and which reader keys can open it; the
record id, the model and the template are sealed. A copy is useless without
the holder's face.

Text form: ``"SP1:" + base45(binary)`` (see :mod:`safepassage.credential.qr`).
Binary layout, version 1 (integers big-endian)::

    offset      size   field
    0           1      version, 0x01
    1           16     credential id, random
    17          8      issuer key id (SHA-256 of the raw Ed25519 public key, first 8 bytes)
    25          8      issued_at, unix seconds
    33          8      expires_at, unix seconds
    41          32     ephemeral X25519 public key, fresh per credential
    73          1      n, the number of reader entries, 1..16
    74          56*n   per reader: reader key id 8 | AES-256-GCM(content key 32) + tag 16
    74+56n      12     payload nonce, random
    86+56n      2      L, the payload ciphertext length (tag included)
    88+56n      L      AES-256-GCM ciphertext of the payload under the content key
    88+56n+L    64     Ed25519 signature by the issuer key over every byte before it

Each reader entry wraps the content key under HKDF-SHA256(X25519(ephemeral,
reader); salt = credential id; info = label | ephemeral public | reader
public), with the bytes 0..73 and the reader key id as associated data. That
wrapping key is used once, so its nonce is fixed (zero). The payload's
associated data is every byte before the ciphertext. The payload::

    1 | r    record id, UTF-8
    1 | m    model name, UTF-8
    1 | k    metric, "l2" or "cosine"
    8        threshold, IEEE-754 double
    2 | 4*d  template dimension d, then d float32 little-endian

Checks run in the order parse -> issuer trusted -> signature -> times ->
decrypt, and each failure raises its own error; nothing returns False.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from safepassage.core import key_agreement, signing
from safepassage.core.key_derivation import derive_key
from safepassage.core.metric import Metric
from safepassage.core.sealing import Aead, AuthenticationFailed
from safepassage.credential.errors import (
    CredentialExpired,
    CredentialNotYetValid,
    CredentialTampered,
    HolderMismatch,
    MalformedCredential,
    ModelMismatch,
    NotForThisReader,
)
from safepassage.credential.keys import KEY_ID_SIZE, IssuerKey, ReaderKey, ReaderPublicKey, TrustedIssuers
from safepassage.credential.qr import decode_text, encode_text

__all__ = [
    "MAX_READERS",
    "VERSION",
    "CredentialInfo",
    "HolderCredential",
    "HolderMatch",
    "issue",
    "match",
    "require_model",
    "verify",
]

log = logging.getLogger(__name__)

VERSION = 0x01
MAX_READERS = 16
MAX_DIMENSION = 2048
DEFAULT_SKEW = timedelta(minutes=5)

_HEADER = struct.Struct(">B16s8sQQ32sB")  # version .. reader count: bytes 0..73
_ID_SIZE = 16
_KEY_SIZE = 32
_TAG_SIZE = 16
_NONCE_SIZE = 12
_SIG_SIZE = 64
_ENTRY_SIZE = KEY_ID_SIZE + _KEY_SIZE + _TAG_SIZE
_WRAP_NONCE = bytes(_NONCE_SIZE)  # each wrapping key encrypts exactly one message
_WRAP_INFO = b"safepassage/holder-credential/reader-wrap/v1\x00"
_MIN_SIZE = _HEADER.size + _ENTRY_SIZE + _NONCE_SIZE + 2 + _TAG_SIZE + _SIG_SIZE
_METRIC_ALIASES = {"euclidean": Metric.L2}


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown or logged about a verified credential: no template, no record id."""

    credential_id: str  # 32 hex digits
    issuer_id: str
    issuer_key_id: str  # 16 hex digits
    issued_at: datetime
    expires_at: datetime
    model: str
    metric: Metric
    threshold: float


@dataclass(frozen=True)
class HolderCredential(CredentialInfo):
    """A verified and opened credential. ``repr`` hides the record id and the template."""

    record_id: str = field(repr=False)
    template: npt.NDArray[np.float32] = field(repr=False, compare=False)  # read-only

    @property
    def info(self) -> CredentialInfo:
        """The public metadata alone, safe to hand on."""
        return CredentialInfo(**{f.name: getattr(self, f.name) for f in fields(CredentialInfo)})


@dataclass(frozen=True)
class HolderMatch:
    """A live face that matched: its score against the template and the credential's threshold."""

    score: float
    threshold: float
    metric: Metric


@dataclass(frozen=True)
class _Parsed:
    credential_id: bytes
    issuer_key_id: str
    issued_at: datetime
    expires_at: datetime
    ephemeral: bytes
    header: bytes  # bytes 0..73, the associated data of every reader entry
    entries: dict[str, bytes]  # reader key id -> wrapped content key
    nonce: bytes
    aad: bytes  # every byte before the payload ciphertext
    ciphertext: bytes
    signed: bytes
    signature: bytes


def _metric(value: Metric | str) -> Metric:
    if isinstance(value, Metric):
        return value
    try:
        return _METRIC_ALIASES.get(value) or Metric(value)
    except ValueError:
        raise MalformedCredential(f"unknown metric {value!r}; expected 'l2' or 'cosine'") from None


def _aware(now: datetime | None, what: str) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise MalformedCredential(f"{what}: the time must carry a time zone")
    return now


def _short(text: str, what: str) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else b""
    if not 1 <= len(data) <= 255:
        raise MalformedCredential(f"cannot issue a credential: the {what} must be 1-255 bytes of UTF-8")
    return bytes([len(data)]) + data


def _wrapping_key(shared: bytes, credential_id: bytes, ephemeral: bytes, reader: bytes) -> bytes:
    return derive_key(shared, _WRAP_INFO + ephemeral + reader, length=_KEY_SIZE, salt=credential_id)


def issue(
    issuer: IssuerKey,
    readers: Sequence[ReaderPublicKey],
    record_id: str,
    template: npt.NDArray[np.floating],
    model: str,
    metric: Metric | str,
    threshold: float,
    valid_for: timedelta,
    now: datetime | None = None,
) -> str:
    """Sign and seal a credential for ``readers``; returns its text form (``SP1:`` + base45)."""
    now = _aware(now, "cannot issue a credential")
    metric = _metric(metric)
    vector = np.asarray(template, dtype=np.float32)
    if vector.ndim != 1 or not 1 <= vector.size <= MAX_DIMENSION or not np.all(np.isfinite(vector)):
        raise MalformedCredential(
            f"cannot issue a credential: the template must be 1-{MAX_DIMENSION} finite values"
        )
    if not math.isfinite(threshold):
        raise MalformedCredential("cannot issue a credential: the threshold must be finite")
    if not 1 <= len(readers) <= MAX_READERS or len({r.key_id for r in readers}) != len(readers):
        raise MalformedCredential(f"cannot issue a credential: give 1-{MAX_READERS} distinct reader keys")
    if valid_for <= timedelta(0):
        raise MalformedCredential("cannot issue a credential: the validity period must be positive")
    issued = math.floor(now.timestamp())
    expires = issued + math.ceil(valid_for.total_seconds())
    if issued < 0 or expires >= 2**63:
        raise MalformedCredential("cannot issue a credential: its dates are out of range")
    payload = (
        _short(record_id, "record id")
        + _short(model, "model name")
        + _short(metric.value, "metric")
        + struct.pack(">dH", float(threshold), vector.size)
        + vector.astype("<f4").tobytes()
    )
    credential_id = os.urandom(_ID_SIZE)
    ephemeral = key_agreement.X25519.generate()
    ephemeral_raw = key_agreement.public_bytes(ephemeral.public_key())
    header = _HEADER.pack(
        VERSION, credential_id, bytes.fromhex(issuer.key_id), issued, expires, ephemeral_raw, len(readers)
    )
    content_key = Aead.generate_key()
    entries = b""
    for reader in readers:
        reader_id = bytes.fromhex(reader.key_id)
        shared = key_agreement.exchange(ephemeral, reader.raw)
        wrapping = _wrapping_key(shared, credential_id, ephemeral_raw, reader.raw)
        entries += reader_id + Aead(wrapping).encrypt(_WRAP_NONCE, content_key, header + reader_id)
    nonce = os.urandom(_NONCE_SIZE)
    aad = header + entries + nonce + struct.pack(">H", len(payload) + _TAG_SIZE)
    body = aad + Aead(content_key).encrypt(nonce, payload, aad)
    binary = body + issuer.sign(body)
    text = encode_text(binary)
    log.debug("issued a credential for %d readers", len(readers))
    return text


def _parse(binary: bytes) -> _Parsed:
    if len(binary) < _MIN_SIZE:
        raise MalformedCredential(f"the credential is {len(binary)} bytes, shorter than any valid one")
    version, credential_id, issuer_key_id, issued, expires, ephemeral, count = _HEADER.unpack_from(binary)
    if version != VERSION:
        raise MalformedCredential(f"unknown credential version {version}")
    if not 1 <= count <= MAX_READERS:
        raise MalformedCredential(f"the credential names {count} readers; expected 1-{MAX_READERS}")
    at = _HEADER.size + count * _ENTRY_SIZE
    if len(binary) < at + _NONCE_SIZE + 2:
        raise MalformedCredential("the credential is truncated")
    (length,) = struct.unpack_from(">H", binary, at + _NONCE_SIZE)
    end = at + _NONCE_SIZE + 2 + length
    if length < _TAG_SIZE or len(binary) != end + _SIG_SIZE:
        raise MalformedCredential("the credential's length does not match its layout")
    entries = {}
    for start in range(_HEADER.size, at, _ENTRY_SIZE):
        entries[binary[start : start + KEY_ID_SIZE].hex()] = binary[start + KEY_ID_SIZE : start + _ENTRY_SIZE]
    if len(entries) != count:
        raise MalformedCredential("the credential names a reader key twice")
    try:
        issued_at, expires_at = datetime.fromtimestamp(issued, UTC), datetime.fromtimestamp(expires, UTC)
    except (OverflowError, ValueError, OSError):
        raise MalformedCredential("the credential's dates are out of range") from None
    if expires_at <= issued_at:
        raise MalformedCredential("the credential expires before it is issued")
    return _Parsed(
        credential_id=credential_id,
        issuer_key_id=issuer_key_id.hex(),
        issued_at=issued_at,
        expires_at=expires_at,
        ephemeral=ephemeral,
        header=binary[: _HEADER.size],
        entries=entries,
        nonce=binary[at : at + _NONCE_SIZE],
        aad=binary[: at + _NONCE_SIZE + 2],
        ciphertext=binary[at + _NONCE_SIZE + 2 : end],
        signed=binary[:end],
        signature=binary[end:],
    )


def _open(parsed: _Parsed, reader: ReaderKey) -> bytes:
    credential = parsed.credential_id.hex()
    wrapped = parsed.entries.get(reader.key_id)
    if wrapped is None:
        raise NotForThisReader(f"credential {credential} is not sealed to reader key {reader.key_id}")
    try:  # a degenerate ephemeral key (ValueError) can only come from a forged or broken issuer
        shared = reader.exchange(parsed.ephemeral)
        wrapping = _wrapping_key(shared, parsed.credential_id, parsed.ephemeral, reader.public.raw)
        aad = parsed.header + bytes.fromhex(reader.key_id)
        content_key = Aead(wrapping).decrypt(_WRAP_NONCE, wrapped, aad)
        return Aead(content_key).decrypt(parsed.nonce, parsed.ciphertext, parsed.aad)
    except (ValueError, AuthenticationFailed):
        raise CredentialTampered(f"credential {credential}: the sealed template failed to open") from None


def _read_payload(payload: bytes) -> tuple[str, str, Metric, float, npt.NDArray[np.float32]]:
    """Record id, model, metric, threshold and template (read-only) from an opened payload."""
    texts: list[str] = []
    at = 0
    try:
        for _ in range(3):
            chunk = payload[at + 1 : at + 1 + payload[at]]
            if not chunk or len(chunk) != payload[at]:
                raise ValueError("short field")
            texts.append(chunk.decode("utf-8"))
            at += 1 + len(chunk)
        threshold, dimension = struct.unpack_from(">dH", payload, at)
        template = np.frombuffer(payload, dtype="<f4", offset=at + 10).astype(np.float32)
    except (IndexError, ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        raise MalformedCredential("the credential's sealed payload is malformed") from None
    if dimension == 0 or template.size != dimension or not np.all(np.isfinite(template)):
        raise MalformedCredential("the credential's template is malformed")
    if not math.isfinite(threshold):
        raise MalformedCredential("the credential's threshold is not finite")
    template.flags.writeable = False
    return texts[0], texts[1], _metric(texts[2]), float(threshold), template


def verify(
    text: str,
    trusted: TrustedIssuers,
    reader: ReaderKey,
    now: datetime | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> HolderCredential:
    """Check a credential offline and open its sealed part; raises the first check that fails.

    ``skew`` is the clock difference tolerated between issuer and device, at
    both ends of the validity period.
    """
    now = _aware(now, "cannot verify a credential")
    parsed = _parse(decode_text(text))
    credential = parsed.credential_id.hex()
    issuer = trusted.get(parsed.issuer_key_id)
    try:
        signing.verify(issuer.key, parsed.signature, parsed.signed)
    except signing.SignatureInvalid:
        raise CredentialTampered(
            f"credential {credential}: the signature of issuer {issuer.issuer_id} (key {issuer.key_id}) fails"
        ) from None
    if parsed.issued_at > now + skew:
        raise CredentialNotYetValid(
            f"credential {credential} is issued at {parsed.issued_at.isoformat()}, after this device's clock"
        )
    if now > parsed.expires_at + skew:
        raise CredentialExpired(f"credential {credential} expired at {parsed.expires_at.isoformat()}")
    record_id, model, metric, threshold, template = _read_payload(_open(parsed, reader))
    log.debug("verified a credential of issuer %s for reader %s", issuer.issuer_id, reader.key_id)
    return HolderCredential(
        credential_id=credential,
        issuer_id=issuer.issuer_id,
        issuer_key_id=issuer.key_id,
        issued_at=parsed.issued_at,
        expires_at=parsed.expires_at,
        model=model,
        metric=metric,
        threshold=threshold,
        record_id=record_id,
        template=template,
    )


def require_model(credential: HolderCredential, model: str) -> None:
    """ModelMismatch unless the credential's template was made by ``model``."""
    if credential.model != model:
        raise ModelMismatch(
            f"credential {credential.credential_id} holds a template of model {credential.model!r};"
            f" this device embeds with {model!r}"
        )


def match(credential: HolderCredential, live_embedding: npt.NDArray[np.floating], model: str) -> HolderMatch:
    """Compare a live embedding with the credential's template; HolderMismatch when it is not the holder."""
    require_model(credential, model)
    live = np.asarray(live_embedding, dtype=np.float32)
    template = credential.template
    if live.shape != template.shape or not np.all(np.isfinite(live)):
        raise ModelMismatch(
            f"credential {credential.credential_id}: a live embedding of shape {live.shape} cannot be"
            f" compared with a template of shape {template.shape}"
        )
    if credential.metric is Metric.L2:
        score = float(np.linalg.norm(live.astype(np.float64) - template.astype(np.float64)))
    else:
        norms = float(np.linalg.norm(live)) * float(np.linalg.norm(template))
        score = float(np.dot(live.astype(np.float64), template.astype(np.float64))) / max(norms, 1e-12)
    if not credential.metric.is_match(score, credential.threshold):
        raise HolderMismatch(
            f"the live face does not match credential {credential.credential_id}"
            f" ({credential.metric.value} score {score:.3f}, threshold {credential.threshold:.3f})"
        )
    return HolderMatch(score=score, threshold=credential.threshold, metric=credential.metric)
