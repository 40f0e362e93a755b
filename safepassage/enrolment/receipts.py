"""Signed receipts the person keeps: proof of what they consented to, changed, or had erased.

A person whose consent is ignored, or whose erasure request is denied later,
needs evidence that does not depend on the NGO's or the state's database
being honest. The enrolling station signs each receipt with its Ed25519 key;
anyone holding the station's public key can check it offline, years later.

Receipts travel in a pocket, in a phone's photos, through an employer's hands.
So they carry nothing personal: the record id, the scopes, hashes, times, the
station and its key id. Body values are restricted to printable ASCII of a
bounded length, which hashes, scope labels and timestamps fit and which keeps
free text (a name, say) from slipping in by mistake.

The signature covers a domain-separation prefix and the canonical JSON of the
receipt (sorted keys, no spaces), so the text form may be re-indented or
re-ordered by a tool without breaking it, but no field can change. Every
failure raises :class:`ReceiptInvalid`; nothing returns False.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from safepassage.core import key_files, signing
from safepassage.core.signing import SigningKey, VerifyingKey
from safepassage.enrolment.errors import KeyringError, ReceiptInvalid
from safepassage.enrolment.record import canonical_json

__all__ = [
    "BODY_MAX_ITEMS",
    "BODY_MAX_KEYS",
    "BODY_VALUE_MAX_CHARS",
    "RECEIPT_FORMAT",
    "RECEIPT_TEXT_MAX_CHARS",
    "Receipt",
    "ReceiptKind",
    "SignedReceipt",
    "StationKey",
    "key_id_of",
    "verify_receipt",
]

log = logging.getLogger(__name__)

RECEIPT_FORMAT = 1
RECEIPT_TEXT_MAX_CHARS = 64 * 1024
BODY_MAX_KEYS = 32
BODY_MAX_ITEMS = 256  # in one list value: KEK versions destroyed over years of rotation, say
BODY_VALUE_MAX_CHARS = 256
SIGNATURE_BYTES = signing.SIGNATURE_SIZE
_DOMAIN = b"safepassage/enrolment/receipt/v1\0"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # record and station ids
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_BODY_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_BODY_VALUE = re.compile(r"[\x20-\x7e]*")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_FIELDS = ("v", "kind", "record_id", "issued_at", "station_id", "key_id", "body")


class ReceiptKind(StrEnum):
    CONSENT = "consent"
    CONSENT_CHANGE = "consent_change"
    ERASURE = "erasure"


BodyValue = str | tuple[str, ...]


def _check_id(where: str, value: object, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ReceiptInvalid(f"{where}: must match {pattern.pattern}")


def _check_body_value(where: str, value: object) -> None:
    if not isinstance(value, str) or len(value) > BODY_VALUE_MAX_CHARS or not _BODY_VALUE.fullmatch(value):
        raise ReceiptInvalid(f"{where}: must be printable ASCII of at most {BODY_VALUE_MAX_CHARS} characters")


@dataclass(frozen=True)
class Receipt:
    """What was done to which record, when, by which station; no personal data."""

    kind: ReceiptKind
    record_id: str
    issued_at: datetime  # UTC, whole seconds
    station_id: str
    key_id: str  # hex of the first 8 bytes of SHA-256 of the station's raw public key
    body: Mapping[str, BodyValue] = field(hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ReceiptKind):
            raise ReceiptInvalid("Receipt.kind: must be a ReceiptKind")
        _check_id("Receipt.record_id", self.record_id, _ID)
        _check_id("Receipt.station_id", self.station_id, _ID)
        _check_id("Receipt.key_id", self.key_id, _KEY_ID)
        at = self.issued_at
        if not isinstance(at, datetime) or at.utcoffset() is None or at.utcoffset() or at.microsecond:
            raise ReceiptInvalid("Receipt.issued_at: must be a UTC datetime in whole seconds")
        object.__setattr__(self, "issued_at", at.astimezone(UTC))
        if not isinstance(self.body, Mapping) or len(self.body) > BODY_MAX_KEYS:
            raise ReceiptInvalid(f"Receipt.body: must be a mapping of at most {BODY_MAX_KEYS} keys")
        for key, value in self.body.items():
            _check_id("Receipt.body", key, _BODY_KEY)
            if isinstance(value, tuple):
                if len(value) > BODY_MAX_ITEMS:
                    raise ReceiptInvalid(f"Receipt.body.{key}: must hold at most {BODY_MAX_ITEMS} items")
                for item in value:
                    _check_body_value(f"Receipt.body.{key}", item)
            else:
                _check_body_value(f"Receipt.body.{key}", value)
        # A read-only copy in key order: the caller's dict may change; the receipt may not.
        object.__setattr__(self, "body", MappingProxyType(dict(sorted(self.body.items()))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": RECEIPT_FORMAT,
            "kind": self.kind.value,
            "record_id": self.record_id,
            "issued_at": self.issued_at.strftime(_TIME_FORMAT),
            "station_id": self.station_id,
            "key_id": self.key_id,
            "body": {k: list(v) if isinstance(v, tuple) else v for k, v in self.body.items()},
        }

    def to_text(self) -> str:
        """Canonical JSON of the receipt alone. Not signed: use :class:`SignedReceipt` to hand one out."""
        return canonical_json(self.to_dict()).decode("utf-8")

    def signed_message(self) -> bytes:
        """The bytes the station signs: a domain prefix, then the canonical JSON."""
        return _DOMAIN + canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> Receipt:
        """Parse :meth:`to_dict` output; ReceiptInvalid on anything missing, extra or malformed."""
        if not isinstance(data, Mapping) or set(data) != set(_FIELDS):
            raise ReceiptInvalid("receipt: must be an object with exactly " + ", ".join(_FIELDS))
        if type(data["v"]) is not int or data["v"] != RECEIPT_FORMAT:
            raise ReceiptInvalid(f"receipt.v: must be {RECEIPT_FORMAT}")
        kind = next((k for k in ReceiptKind if k.value == data["kind"]), None)
        if kind is None:
            raise ReceiptInvalid("receipt.kind: must be one of " + ", ".join(k.value for k in ReceiptKind))
        issued = data["issued_at"]
        if not isinstance(issued, str) or not _TIME_TEXT.fullmatch(issued):
            raise ReceiptInvalid("receipt.issued_at: must be a UTC time as YYYY-MM-DDTHH:MM:SSZ")
        try:
            issued_at = datetime.strptime(issued, _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ReceiptInvalid("receipt.issued_at: must be a UTC time as YYYY-MM-DDTHH:MM:SSZ") from None
        body = data["body"]
        if not isinstance(body, Mapping):
            raise ReceiptInvalid("receipt.body: must be an object")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in body.items()}
        return cls(kind, data["record_id"], issued_at, data["station_id"], data["key_id"], values)


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt and the station's Ed25519 signature over :meth:`Receipt.signed_message`."""

    receipt: Receipt
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.receipt, Receipt):
            raise ReceiptInvalid("SignedReceipt.receipt: must be a Receipt")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise ReceiptInvalid(f"SignedReceipt.signature: must be {SIGNATURE_BYTES} bytes")

    def to_text(self) -> str:
        """What the person keeps: canonical JSON with ``receipt`` and ``signature`` (base64)."""
        signature = base64.b64encode(self.signature).decode("ascii")
        return canonical_json({"receipt": self.receipt.to_dict(), "signature": signature}).decode("utf-8")

    @classmethod
    def from_text(cls, text: str) -> SignedReceipt:
        """Parse (not verify) a receipt's text; ReceiptInvalid if malformed. See :func:`verify_receipt`."""
        if not isinstance(text, str) or len(text) > RECEIPT_TEXT_MAX_CHARS:
            raise ReceiptInvalid(
                f"receipt text: must be a string of at most {RECEIPT_TEXT_MAX_CHARS} characters"
            )
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError):
            raise ReceiptInvalid("receipt text: is not well-formed JSON without duplicate keys") from None
        if not isinstance(data, dict) or set(data) != {"receipt", "signature"}:
            raise ReceiptInvalid("receipt text: must be an object with exactly receipt, signature")
        if not isinstance(data["signature"], str):
            raise ReceiptInvalid("receipt text: signature must be base64")
        try:
            signature = base64.b64decode(data["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise ReceiptInvalid("receipt text: signature must be base64") from None
        return cls(Receipt.from_dict(data["receipt"]), signature)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")  # a second value for a signed field must not be ignored
    return result


def key_id_of(public_key: VerifyingKey) -> str:
    """Hex of the first 8 bytes of SHA-256 of the raw public key."""
    return signing.fingerprint(public_key, 8)


def verify_receipt(text: str, public_key_pem: bytes) -> Receipt:
    """The receipt in ``text`` if the station whose public key is given signed it; else ReceiptInvalid.

    Checks, in order: the text parses; the key is an Ed25519 public key; the receipt names that
    key's id (so a receipt from another station fails clearly); the signature verifies.
    """
    signed = SignedReceipt.from_text(text)
    if not isinstance(public_key_pem, bytes):
        raise ReceiptInvalid("public key: must be PEM bytes")
    public_key = signing.ED25519.parse_public(public_key_pem, "public key:", ReceiptInvalid)
    receipt = signed.receipt
    if receipt.key_id != key_id_of(public_key):
        raise ReceiptInvalid(f"receipt {receipt.kind.value} for {receipt.record_id}: signed by another key")
    try:
        signing.verify(public_key, signed.signature, receipt.signed_message())
    except signing.SignatureInvalid:
        raise ReceiptInvalid(f"receipt {receipt.kind.value} for {receipt.record_id}: bad signature") from None
    return receipt


class StationKey:
    """The enrolling station's Ed25519 signing key (PKCS#8 PEM, unencrypted, mode 0600).

    Unencrypted because the kiosk signs unattended; a passphrase would only move the secret
    into its configuration. Publish :meth:`public_pem` and :attr:`key_id` to whoever verifies.
    """

    def __init__(self, private_key: SigningKey, station_id: str) -> None:
        signing.ED25519.private_key(private_key, "station key:", KeyringError)
        _check_id("station_id", station_id, _ID)
        self._key = private_key
        self.station_id = station_id
        self.key_id = key_id_of(private_key.public_key())

    def __repr__(self) -> str:
        return f"StationKey(station_id={self.station_id!r}, key_id={self.key_id!r})"

    @classmethod
    def load_or_create(cls, path: Path, station_id: str) -> StationKey:
        """The key at ``path``, created (0600, parents made) on first use; KeyringError if unusable."""
        # Refused, naming the file, when group or others may read it: it signs every receipt.
        key, created = signing.ED25519.load_or_create(Path(path), "station key", KeyringError)
        if created:
            log.info("station key created: station %s key %s", station_id, key_id_of(key.public_key()))
        return cls(key, station_id)

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM of the public key, for :func:`verify_receipt`."""
        return key_files.public_pem(self._key.public_key())

    def sign(
        self, kind: ReceiptKind, record_id: str, body: Mapping[str, BodyValue], now: datetime | None = None
    ) -> SignedReceipt:
        """A signed receipt issued ``now`` (default: the current time; truncated to whole seconds, UTC)."""
        if now is None:
            now = datetime.now(UTC)
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ReceiptInvalid("now: must be a timezone-aware datetime")
        issued_at = now.astimezone(UTC).replace(microsecond=0)
        receipt = Receipt(kind, record_id, issued_at, self.station_id, self.key_id, body)
        return SignedReceipt(receipt, signing.sign(self._key, receipt.signed_message()))
