"""Sealing record parts under per-record data keys, and crypto-shredding through the keyring."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepassage.core import errors as core
from safepassage.enrolment.errors import InvalidRecord, KeyDestroyed, RecordIntegrityError, WrongKey
from safepassage.enrolment.kek import FileKeyring, WrappedKey
from safepassage.enrolment.record_cipher import SEALED_OVERHEAD, DataKey, RecordCipher

PLAINTEXT = b'{"family_name":"Example","documents":[]}'


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring.open(tmp_path / "kek.json", create=True)


@pytest.fixture
def cipher(keyring: FileKeyring) -> RecordCipher:
    return RecordCipher(keyring)


@pytest.fixture
def key(cipher: RecordCipher) -> DataKey:
    return cipher.new_key("rec-A")[0]


def _hkdf(key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _flip(blob: bytes, position: int) -> bytes:
    return blob[:position] + bytes([blob[position] ^ 0x80]) + blob[position + 1 :]


@pytest.mark.parametrize("plaintext", [b"", b"x", PLAINTEXT, os.urandom(300_000)])
def test_round_trip(key: DataKey, plaintext: bytes) -> None:
    blob = RecordCipher.seal(key, "record", plaintext)
    assert len(blob) == SEALED_OVERHEAD + len(plaintext) and SEALED_OVERHEAD == 37
    assert RecordCipher.open(key, "record", blob) == plaintext
    assert RecordCipher.seal(key, "record", plaintext) != blob  # fresh nonce every time


def test_layout_is_as_documented(key: DataKey) -> None:
    """An independent decryption from the documented layout: HKDF key check, HKDF seal subkey, AAD."""
    blob = RecordCipher.seal(key, "secrets", PLAINTEXT)
    assert blob[0] == 0x01
    assert blob[1:9] == _hkdf(key.key, b"safepassage/enrolment/key-check/v1", 32)[:8] == key.key_check
    aad = b"safepassage/enrolment/record/v1\x00\x01" + struct.pack("<H", 5) + b"rec-A"
    aad += struct.pack("<H", 7) + b"secrets"
    seal_key = _hkdf(key.key, b"safepassage/enrolment/record-seal/v1", 32)
    assert AESGCM(seal_key).decrypt(blob[9:21], blob[21:], aad) == PLAINTEXT
    assert seal_key != key.key


@pytest.mark.parametrize("plaintext", [b"", b"abc"])
def test_every_single_byte_flip_is_detected(key: DataKey, plaintext: bytes) -> None:
    blob = RecordCipher.seal(key, "record", plaintext)
    for position in range(len(blob)):
        expected = WrongKey if 1 <= position <= 8 else RecordIntegrityError
        with pytest.raises(expected):
            RecordCipher.open(key, "record", _flip(blob, position))


def test_wrong_data_key(cipher: RecordCipher, key: DataKey) -> None:
    blob = RecordCipher.seal(key, "record", PLAINTEXT)
    other = DataKey("rec-A", os.urandom(32))
    with pytest.raises(WrongKey, match="another data key") as caught:
        RecordCipher.open(other, "record", blob)
    assert isinstance(caught.value, core.DataIntegrityError)
    with pytest.raises(WrongKey):
        RecordCipher.open(cipher.new_key("rec-A")[0], "record", blob)


def test_blob_moved_to_another_record_or_part(key: DataKey) -> None:
    blob = RecordCipher.seal(key, "record", PLAINTEXT)
    moved = DataKey("rec-B", key.key)  # even with the right key bytes
    with pytest.raises(RecordIntegrityError, match="rec-B"):
        RecordCipher.open(moved, "record", blob)
    with pytest.raises(RecordIntegrityError, match="referral"):
        RecordCipher.open(key, "referral", blob)


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + bytes(35)])
def test_truncated_blob(key: DataKey, blob: bytes) -> None:
    with pytest.raises(RecordIntegrityError, match="truncated"):
        RecordCipher.open(key, "record", blob)


def test_unknown_version_and_non_bytes(key: DataKey) -> None:
    blob = RecordCipher.seal(key, "record", PLAINTEXT)
    with pytest.raises(RecordIntegrityError, match="unknown sealing version 2"):
        RecordCipher.open(key, "record", b"\x02" + blob[1:])
    not_bytes: Any = bytearray(blob)
    with pytest.raises(RecordIntegrityError, match="not a byte string"):
        RecordCipher.open(key, "record", not_bytes)


def test_errors_quote_neither_key_nor_plaintext(key: DataKey) -> None:
    blob = RecordCipher.seal(key, "record", PLAINTEXT)
    messages = []
    for bad_key, bad_blob in ((DataKey("rec-A", os.urandom(32)), blob), (key, _flip(blob, 30))):
        with pytest.raises((WrongKey, RecordIntegrityError)) as caught:
            RecordCipher.open(bad_key, "record", bad_blob)
        messages.append(str(caught.value))
    for message in messages:
        assert "Example" not in message and key.key.hex() not in message
        assert key.key_check.hex() not in message


def test_data_key_repr_hides_the_key(key: DataKey) -> None:
    text = repr(key) + str(key)
    assert "rec-A" in text
    assert key.key.hex() not in text and repr(key.key) not in text and str(list(key.key)) not in text


def test_data_key_checks_itself() -> None:
    with pytest.raises(WrongKey):
        DataKey("rec-A", os.urandom(16))
    with pytest.raises(InvalidRecord):
        DataKey("", os.urandom(32))
    with pytest.raises(InvalidRecord):
        RecordCipher.seal(DataKey("rec-A", os.urandom(32)), "", b"x")
    with pytest.raises(InvalidRecord):
        RecordCipher.seal(DataKey("rec-A", os.urandom(32)), "p" * 70_000, b"x")


def test_new_key_and_data_key(cipher: RecordCipher) -> None:
    key, wrapped = cipher.new_key("rec-A")
    assert wrapped.kek_version == 1
    assert cipher.data_key("rec-A", wrapped) == key
    with pytest.raises(RecordIntegrityError):
        cipher.data_key("rec-B", wrapped)
    assert cipher.new_key("rec-A")[0].key != key.key


def test_rewrap_moves_to_the_current_version(cipher: RecordCipher, keyring: FileKeyring) -> None:
    key, wrapped = cipher.new_key("rec-A")
    blob = RecordCipher.seal(key, "record", PLAINTEXT)
    keyring.rotate()
    rewrapped = cipher.rewrap("rec-A", wrapped)
    assert rewrapped.kek_version == 2
    keyring.destroy(1)
    assert RecordCipher.open(cipher.data_key("rec-A", rewrapped), "record", blob) == PLAINTEXT
    with pytest.raises(KeyDestroyed):
        cipher.data_key("rec-A", wrapped)
    with pytest.raises(RecordIntegrityError):
        cipher.rewrap("rec-A", WrappedKey(2, _flip(rewrapped.blob, 40)))


def test_erasure_by_crypto_shredding(cipher: RecordCipher, keyring: FileKeyring, tmp_path: Path) -> None:
    """Erase A: drop its wrapped key, rotate, rewrap the others, destroy the old version."""
    live: dict[str, WrappedKey] = {}
    sealed: dict[str, bytes] = {}
    for record_id in ("rec-A", "rec-B", "rec-C"):
        key, live[record_id] = cipher.new_key(record_id)
        sealed[record_id] = RecordCipher.seal(key, "record", record_id.encode())
    backup = dict(live)  # a backup of the store taken before the erasure

    del live["rec-A"]
    old_version = keyring.current_version()
    keyring.rotate()
    live = {record_id: cipher.rewrap(record_id, wrapped) for record_id, wrapped in live.items()}
    keyring.destroy(old_version)

    reopened = RecordCipher(FileKeyring.open(tmp_path / "kek.json"))
    for record_id, wrapped in live.items():
        assert RecordCipher.open(reopened.data_key(record_id, wrapped), "record", sealed[record_id]) == (
            record_id.encode()
        )
    for record_id, wrapped in backup.items():  # the backup opens nothing, A least of all
        with pytest.raises(KeyDestroyed):
            reopened.data_key(record_id, wrapped)
