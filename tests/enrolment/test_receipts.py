"""Signed receipts: sign and verify, every tamper caught, another station's key refused, the key file."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from safepassage.core.errors import DataIntegrityError
from safepassage.enrolment.consent import ConsentText, Scope, ScopeGrant, decide
from safepassage.enrolment.errors import KeyringError, ReceiptInvalid
from safepassage.enrolment.receipts import (
    BODY_MAX_KEYS,
    RECEIPT_TEXT_MAX_CHARS,
    Receipt,
    ReceiptKind,
    SignedReceipt,
    StationKey,
    key_id_of,
    verify_receipt,
)

NOW = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
RECORD_ID = "pr-0123456789abcdef01234567"
BODY: dict[str, str | tuple[str, ...]] = {
    "granted": ("store", "verify_at_border"),
    "refused": ("share:la-strada",),
    "language": "ne-NP",
    "text_sha256": "ab" * 32,
}


@pytest.fixture
def station(tmp_path: Path) -> StationKey:
    return StationKey.load_or_create(tmp_path / "keys" / "station.pem", "kiosk-ktm-01")


@pytest.fixture
def text(station: StationKey) -> str:
    return station.sign(ReceiptKind.CONSENT, RECORD_ID, BODY, now=NOW).to_text()


def test_sign_and_verify(station: StationKey, text: str) -> None:
    receipt = verify_receipt(text, station.public_pem())
    assert receipt.kind is ReceiptKind.CONSENT
    assert receipt.record_id == RECORD_ID
    assert receipt.issued_at == NOW.replace(microsecond=0)
    assert receipt.issued_at.tzinfo is UTC
    assert receipt.station_id == "kiosk-ktm-01"
    assert receipt.key_id == station.key_id
    assert dict(receipt.body) == BODY
    assert receipt == SignedReceipt.from_text(text).receipt


def test_text_form(text: str, station: StationKey) -> None:
    parsed = json.loads(text)
    assert set(parsed) == {"receipt", "signature"}
    assert parsed["receipt"]["issued_at"] == "2026-03-14T09:26:53Z"
    assert parsed["receipt"]["body"]["granted"] == ["store", "verify_at_border"]
    assert len(base64.b64decode(parsed["signature"])) == 64
    # Canonical, and the signature is over the content, not the layout: re-indenting keeps it valid.
    assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"))
    assert verify_receipt(json.dumps(parsed, indent=2), station.public_pem()).record_id == RECORD_ID


def test_receipt_to_text_is_the_unsigned_canonical_receipt(text: str) -> None:
    receipt = SignedReceipt.from_text(text).receipt
    assert json.loads(receipt.to_text()) == json.loads(text)["receipt"]
    assert "signature" not in receipt.to_text()
    assert receipt.signed_message().endswith(receipt.to_text().encode())


def test_default_time_is_now_in_whole_seconds(station: StationKey) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    receipt = verify_receipt(station.sign(ReceiptKind.ERASURE, RECORD_ID, {}).to_text(), station.public_pem())
    assert before <= receipt.issued_at <= datetime.now(UTC)
    assert receipt.issued_at.microsecond == 0


def test_other_time_zones_are_converted_to_utc(station: StationKey) -> None:
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    signed = station.sign(ReceiptKind.CONSENT, RECORD_ID, BODY, now=NOW.astimezone(kathmandu))
    assert signed.receipt.issued_at == NOW.replace(microsecond=0)
    assert '"issued_at":"2026-03-14T09:26:53Z"' in signed.to_text()


def test_naive_time_is_refused(station: StationKey) -> None:
    with pytest.raises(ReceiptInvalid, match="now"):
        station.sign(ReceiptKind.CONSENT, RECORD_ID, BODY, now=datetime(2026, 3, 14, 9, 26))


def test_consent_decision_is_a_receipt_body(station: StationKey) -> None:
    decision = decide(ConsentText("ne-NP", "म सहमत छु।"), [ScopeGrant(Scope.STORE)], [])
    text = station.sign(ReceiptKind.CONSENT, RECORD_ID, decision.to_dict(), now=NOW).to_text()
    assert verify_receipt(text, station.public_pem()).body["text_sha256"] == decision.text_sha256


# ---- tampering


def tampered(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    parsed = json.loads(text)
    change(parsed)
    return json.dumps(parsed)


def _receipt(name: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(parsed: dict[str, Any]) -> None:
        parsed["receipt"][name] = value

    return change


def _body(name: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(parsed: dict[str, Any]) -> None:
        if value is None:
            del parsed["receipt"]["body"][name]
        else:
            parsed["receipt"]["body"][name] = value

    return change


def _flip_signature_byte(index: int) -> Callable[[dict[str, Any]], None]:
    def change(parsed: dict[str, Any]) -> None:
        signature = bytearray(base64.b64decode(parsed["signature"]))
        signature[index] ^= 0x01
        parsed["signature"] = base64.b64encode(bytes(signature)).decode()

    return change


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "body scope added": _body("granted", ["share:la-strada", "store", "verify_at_border"]),
    "body scope dropped": _body("refused", []),
    "body hash changed": _body("text_sha256", "cd" * 32),
    "body list made text": _body("refused", "share:la-strada"),
    "body key removed": _body("language", None),
    "body key added": _body("note", "ok"),
    "record id": _receipt("record_id", "pr-ffffffffffffffffffffffff"),
    "time": _receipt("issued_at", "2026-03-14T09:26:54Z"),
    "kind": _receipt("kind", "erasure"),
    "station id": _receipt("station_id", "kiosk-ktm-02"),
    "key id": _receipt("key_id", "0" * 16),
    "signature first byte": _flip_signature_byte(0),
    "signature last byte": _flip_signature_byte(63),
}


@pytest.mark.parametrize("change", TAMPERS.values(), ids=TAMPERS.keys())
def test_every_tamper_is_caught(
    station: StationKey, text: str, change: Callable[[dict[str, Any]], None]
) -> None:
    with pytest.raises(ReceiptInvalid, match=r"bad signature|another key"):
        verify_receipt(tampered(text, change), station.public_pem())


def test_another_stations_key_is_refused(tmp_path: Path, text: str) -> None:
    other = StationKey.load_or_create(tmp_path / "other.pem", "kiosk-ktm-01")
    with pytest.raises(ReceiptInvalid, match="another key"):
        verify_receipt(text, other.public_pem())
    # Claiming the other key's id does not help: the signature is still the first station's.
    forged = tampered(text, _receipt("key_id", other.key_id))
    with pytest.raises(ReceiptInvalid, match="signature"):
        verify_receipt(forged, other.public_pem())


def test_receipt_invalid_is_a_data_integrity_error() -> None:
    assert issubclass(ReceiptInvalid, DataIntegrityError)


# ---- malformed text and keys


MALFORMED = {
    "empty": "",
    "not json": "receipt",
    "list": "[]",
    "empty object": "{}",
    "no signature": '{"receipt":{}}',
    "extra key": '{"receipt":{},"signature":"","x":1}',
    "duplicate key": '{"receipt":{},"receipt":{},"signature":""}',
    "deep": "[" * 100_000,
    "huge": " " * (RECEIPT_TEXT_MAX_CHARS + 1),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_text_is_refused(station: StationKey, text: str) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(text, station.public_pem())


def test_not_text_is_refused(station: StationKey, text: str) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(text.encode(), station.public_pem())  # type: ignore[arg-type]


FIELD_DAMAGE: dict[str, Callable[[dict[str, Any]], None]] = {
    "signature not base64": lambda p: p.update(signature="not base64!"),
    "signature short": lambda p: p.update(signature=base64.b64encode(b"x" * 63).decode()),
    "signature number": lambda p: p.update(signature=64),
    "version": _receipt("v", 2),
    "version bool": _receipt("v", True),
    "unknown kind": _receipt("kind", "deletion"),
    "time with offset": _receipt("issued_at", "2026-03-14T09:26:53+00:00"),
    "time impossible": _receipt("issued_at", "2026-02-30T09:26:53Z"),
    "record id spaces": _receipt("record_id", "record of Sita"),
    "key id upper": _receipt("key_id", "ABCDEF0123456789"),
    "body not object": _receipt("body", ["store"]),
    "body non-ascii": _body("language", "नेपाली"),
    "body nested": _body("granted", [["store"]]),
    "receipt missing field": lambda p: p["receipt"].pop("station_id"),
}


@pytest.mark.parametrize("change", FIELD_DAMAGE.values(), ids=FIELD_DAMAGE.keys())
def test_malformed_fields_are_refused(
    station: StationKey, text: str, change: Callable[[dict[str, Any]], None]
) -> None:
    with pytest.raises(ReceiptInvalid):
        SignedReceipt.from_text(tampered(text, change))


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "a string",
    ],
    ids=["empty", "garbage", "x25519", "str"],
)
def test_bad_public_key_is_refused(text: str, pem: Any) -> None:
    with pytest.raises(ReceiptInvalid, match="public key"):
        verify_receipt(text, pem)


# ---- what a receipt may carry


def test_body_refuses_free_text_and_bad_shapes(station: StationKey) -> None:
    for body in [
        {"holder": "Sītā Tamang"},  # non-ASCII: names rarely fit
        {"Holder": "x"},  # keys are lower-case identifiers
        {"granted": ["store"]},  # lists must be tuples (immutable)
        {"note": "x" * 257},
        {"count": 3},
        {f"k{i}": "v" for i in range(BODY_MAX_KEYS + 1)},
    ]:
        with pytest.raises(ReceiptInvalid, match="body"):
            station.sign(ReceiptKind.CONSENT, RECORD_ID, body, now=NOW)  # type: ignore[arg-type]


def test_receipt_fields_are_checked(station: StationKey) -> None:
    good: dict[str, Any] = {
        "kind": ReceiptKind.CONSENT,
        "record_id": RECORD_ID,
        "issued_at": NOW.replace(microsecond=0),
        "station_id": "kiosk-ktm-01",
        "key_id": station.key_id,
        "body": {},
    }
    Receipt(**good)
    for name, value in [
        ("kind", "consent"),
        ("record_id", ""),
        ("issued_at", NOW),  # fractions of a second
        ("issued_at", NOW.replace(microsecond=0, tzinfo=None)),
        ("issued_at", "2026-03-14T09:26:53Z"),
        ("station_id", "kiosk ktm"),
        ("key_id", station.key_id[:-1]),
    ]:
        with pytest.raises(ReceiptInvalid, match=name):
            Receipt(**{**good, name: value})


def test_body_is_a_frozen_copy(station: StationKey) -> None:
    body: dict[str, str | tuple[str, ...]] = {"language": "en"}
    receipt = station.sign(ReceiptKind.CONSENT, RECORD_ID, body, now=NOW).receipt
    body["language"] = "fr"
    assert receipt.body["language"] == "en"
    with pytest.raises(TypeError):
        receipt.body["language"] = "fr"  # type: ignore[index]


# ---- the station key file


def test_key_file_is_private_and_reloads_with_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "station.pem"
    first = StationKey.load_or_create(path, "kiosk-ktm-01")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = StationKey.load_or_create(path, "kiosk-ktm-01")
    assert again.key_id == first.key_id
    assert again.public_pem() == first.public_pem()
    assert len(first.key_id) == 16 and int(first.key_id, 16) >= 0
    text = first.sign(ReceiptKind.CONSENT, RECORD_ID, BODY, now=NOW).to_text()
    assert verify_receipt(text, again.public_pem()).key_id == first.key_id
    assert [p.name for p in path.parent.iterdir()] == ["station.pem"]  # no temporary left behind


def test_key_id_is_of_the_public_key(station: StationKey) -> None:
    public = serialization.load_pem_public_key(station.public_pem())
    assert key_id_of(public) == station.key_id  # type: ignore[arg-type]
    assert station.key_id in repr(station) and "PRIVATE" not in repr(station)


def test_unusable_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    garbage.chmod(0o600)
    with pytest.raises(KeyringError, match="PEM"):
        StationKey.load_or_create(garbage, "kiosk-ktm-01")
    x25519 = tmp_path / "x25519.pem"
    x25519.write_bytes(
        X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    x25519.chmod(0o600)
    with pytest.raises(KeyringError, match="Ed25519"):
        StationKey.load_or_create(x25519, "kiosk-ktm-01")
    readable = tmp_path / "readable.pem"
    StationKey.load_or_create(readable, "kiosk-ktm-01")
    readable.chmod(0o640)  # others could sign receipts in the station's name
    with pytest.raises(KeyringError, match=f"chmod 600 {readable}"):
        StationKey.load_or_create(readable, "kiosk-ktm-01")
    with pytest.raises(ReceiptInvalid, match="station_id"):
        StationKey(Ed25519PrivateKey.generate(), "kiosk ktm 01")
