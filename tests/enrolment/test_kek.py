"""The file keyring: wrapping bound to the record, rotation, crypto-shredding, the file on disk."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from safepassage.core import errors as core
from safepassage.enrolment.errors import (
    InvalidRecord,
    KeyDestroyed,
    KeyringError,
    RecordIntegrityError,
    WrongKey,
)
from safepassage.enrolment.kek import WRAPPED_KEY_SIZE, FileKeyring, KeyEncryptionKeys, WrappedKey


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "kek.json"


@pytest.fixture
def ring(path: Path) -> FileKeyring:
    return FileKeyring.open(path, create=True)


def _flip(blob: bytes, position: int) -> bytes:
    return blob[:position] + bytes([blob[position] ^ 0x01]) + blob[position + 1 :]


def _file_keys(path: Path) -> list[bytes]:
    return [base64.b64decode(v) for v in json.loads(path.read_text())["keys"].values()]


def test_round_trip_and_layout(ring: FileKeyring) -> None:
    data_key = os.urandom(32)
    wrapped = ring.wrap(data_key, "rec-1")
    assert isinstance(ring, KeyEncryptionKeys)
    assert wrapped.kek_version == 1 == ring.current_version()
    assert len(wrapped.blob) == WRAPPED_KEY_SIZE == 65
    assert wrapped.blob[0] == 0x01 and wrapped.blob[1:5] == (1).to_bytes(4, "little")
    assert data_key not in wrapped.blob
    assert ring.unwrap(wrapped, "rec-1") == data_key
    assert WrappedKey.from_blob(wrapped.blob) == wrapped
    assert ring.wrap(data_key, "rec-1").blob != wrapped.blob  # fresh nonce every time


def test_repr_shows_no_key_material(ring: FileKeyring, path: Path) -> None:
    wrapped = ring.wrap(os.urandom(32), "rec-1")
    text = repr(ring) + repr(wrapped)
    assert wrapped.blob.hex() not in text and repr(wrapped.blob) not in text
    for key in _file_keys(path):
        assert base64.b64encode(key).decode() not in text and key.hex() not in text


@pytest.mark.parametrize("position", range(WRAPPED_KEY_SIZE))
def test_every_single_byte_flip_is_detected(ring: FileKeyring, position: int) -> None:
    wrapped = ring.wrap(os.urandom(32), "rec-1")
    flipped = _flip(wrapped.blob, position)
    with pytest.raises(RecordIntegrityError):
        ring.unwrap(WrappedKey(wrapped.kek_version, flipped), "rec-1")
    # Rebuilt from the stored blob alone, a flipped version number names a version this
    # keyring never had: that is reported as such, never as a good key.
    with pytest.raises((RecordIntegrityError, KeyDestroyed)) as caught:
        ring.unwrap(WrappedKey.from_blob(flipped) if position else WrappedKey(1, flipped), "rec-1")
    if not 1 <= position <= 4:
        assert isinstance(caught.value, RecordIntegrityError)


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + bytes(63), b"\x01" + bytes(65)])
def test_wrong_size_blob_is_an_integrity_error(ring: FileKeyring, blob: bytes) -> None:
    with pytest.raises(RecordIntegrityError):
        ring.unwrap(WrappedKey(1, blob), "rec-1")
    with pytest.raises(RecordIntegrityError):
        WrappedKey.from_blob(blob)


def test_unknown_format_version_is_an_integrity_error(ring: FileKeyring) -> None:
    wrapped = ring.wrap(os.urandom(32), "rec-1")
    with pytest.raises(RecordIntegrityError, match="format version 2"):
        ring.unwrap(WrappedKey(1, b"\x02" + wrapped.blob[1:]), "rec-1")


def test_wrapped_key_of_one_record_does_not_open_for_another(ring: FileKeyring) -> None:
    key_a, key_b = os.urandom(32), os.urandom(32)
    wrapped_a, wrapped_b = ring.wrap(key_a, "rec-A"), ring.wrap(key_b, "rec-B")
    with pytest.raises(RecordIntegrityError, match="rec-B"):
        ring.unwrap(wrapped_a, "rec-B")
    with pytest.raises(RecordIntegrityError):
        ring.unwrap(wrapped_b, "rec-A")
    with pytest.raises(RecordIntegrityError):
        ring.unwrap(wrapped_a, "rec-A ")  # no prefix or suffix games either


def test_another_deployments_keyring_cannot_unwrap(ring: FileKeyring, tmp_path: Path) -> None:
    other = FileKeyring.open(tmp_path / "other.json", create=True)
    wrapped = other.wrap(os.urandom(32), "rec-1")  # same version number 1, other key
    with pytest.raises(RecordIntegrityError):
        ring.unwrap(wrapped, "rec-1")
    other.rotate()
    with pytest.raises(KeyDestroyed, match="unknown to this keyring"):
        ring.unwrap(other.wrap(os.urandom(32), "rec-1"), "rec-1")


def test_wrap_checks_its_inputs(ring: FileKeyring) -> None:
    with pytest.raises(WrongKey):
        ring.wrap(os.urandom(16), "rec-1")
    with pytest.raises(InvalidRecord):
        ring.wrap(os.urandom(32), "")
    with pytest.raises(InvalidRecord):
        ring.unwrap(ring.wrap(os.urandom(32), "rec-1"), "")


def test_rotation_rewrap_and_destroy(ring: FileKeyring) -> None:
    data_key = os.urandom(32)
    old = ring.wrap(data_key, "rec-1")
    assert old.kek_version == 1
    assert ring.rotate() == 2
    assert ring.current_version() == 2 and ring.versions() == (1, 2)
    assert ring.unwrap(old, "rec-1") == data_key  # old versions live until destroyed
    new = ring.wrap(ring.unwrap(old, "rec-1"), "rec-1")
    assert new.kek_version == 2
    ring.destroy(1)
    assert ring.versions() == (2,) and ring.destroyed_versions() == (1,)
    assert ring.unwrap(new, "rec-1") == data_key
    with pytest.raises(KeyDestroyed, match="version 1 was destroyed") as caught:
        ring.unwrap(old, "rec-1")
    assert isinstance(caught.value, core.FailedPrecondition)
    ring.destroy(1)  # idempotent
    assert ring.rotate() == 3  # numbers are never reused


def test_destroy_refuses_the_current_and_unknown_versions(ring: FileKeyring) -> None:
    with pytest.raises(KeyringError, match="current"):
        ring.destroy(1)
    with pytest.raises(KeyringError, match="unknown"):
        ring.destroy(7)
    assert ring.versions() == (1,)


def test_reopening_keeps_versions_and_destroyed_list(ring: FileKeyring, path: Path) -> None:
    data_key = os.urandom(32)
    v1 = ring.wrap(data_key, "rec-1")
    ring.rotate()
    v2 = ring.wrap(data_key, "rec-1")
    ring.rotate()
    ring.destroy(1)
    again = FileKeyring.open(path, create=False)
    assert again.current_version() == 3
    assert again.versions() == (2, 3) and again.destroyed_versions() == (1,)
    assert again.unwrap(v2, "rec-1") == data_key
    with pytest.raises(KeyDestroyed, match="destroyed"):
        again.unwrap(v1, "rec-1")
    assert again.rotate() == 4
    # create=True on an existing keyring loads it; it never replaces it.
    assert FileKeyring.open(path, create=True).versions() == (2, 3, 4)


def test_destroyed_key_is_gone_from_the_file(ring: FileKeyring, path: Path) -> None:
    first = _file_keys(path)[0]
    ring.rotate()
    ring.destroy(1)
    assert base64.b64encode(first) not in path.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.json"]  # no temporary left


def test_keyring_file_is_0600(ring: FileKeyring, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.destroy(1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_keyring_without_create(path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        FileKeyring.open(path, create=False)
    assert not path.exists()


def test_unreadable_keyring(tmp_path: Path) -> None:
    (tmp_path / "kek.json").mkdir()
    with pytest.raises(KeyringError, match="cannot read"):
        FileKeyring.open(tmp_path / "kek.json", create=False)


def _good(path: Path) -> dict[str, Any]:
    FileKeyring.open(path, create=True).rotate()
    document: dict[str, Any] = json.loads(path.read_text())
    return document


_B64_32 = base64.b64encode(bytes(32)).decode()
MALFORMED: dict[str, Any] = {
    "not json": None,
    "array": [],
    "wrong format": {"format": "other"},
    "format version": {"format_version": 2},
    "keys not object": {"keys": []},
    "destroyed not list": {"destroyed": {}},
    "short key": {"keys": {"1": base64.b64encode(bytes(31)).decode(), "2": _B64_32}},
    "not base64": {"keys": {"1": "!!!", "2": _B64_32}},
    "key not text": {"keys": {"1": 5, "2": _B64_32}},
    "bad version name": {"keys": {"x": _B64_32}},
    "version zero": {"destroyed": [0]},
    "bool version": {"current_version": True},
    "current not live": {"current_version": 3},
    "current not newest": {"current_version": 1},
    "live and destroyed": {"destroyed": [1]},
    "destroyed newer": {"destroyed": [9]},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_keyring_is_refused(path: Path, case: str) -> None:
    document = _good(path)
    key_texts = list(document["keys"].values())
    change = MALFORMED[case]
    if change is None:
        path.write_bytes(b"{not json " + " ".join(key_texts).encode())
    elif isinstance(change, list):
        path.write_text(json.dumps(change))
    else:
        path.write_text(json.dumps({**document, **change}))
    with pytest.raises(KeyringError) as caught:
        FileKeyring.open(path, create=False)
    for text in key_texts:
        assert text not in str(caught.value)


def test_failed_write_changes_nothing(ring: FileKeyring, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = path.read_bytes()

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(KeyringError, match="No space left"):
        ring.rotate()
    assert ring.current_version() == 1 and path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.json"]


def test_wrapping_while_another_thread_rotates(ring: FileKeyring, path: Path) -> None:
    wrapped: list[tuple[str, bytes, WrappedKey]] = []
    errors: list[BaseException] = []
    start, done = threading.Barrier(5), threading.Event()

    def wrapper(n: int) -> None:
        try:
            start.wait()
            i = 0
            while not done.is_set() or i < 50:
                record_id, key = f"rec-{n}-{i}", os.urandom(32)
                wrapped.append((record_id, key, ring.wrap(key, record_id)))
                i += 1
            record_id, key = f"rec-{n}-last", os.urandom(32)
            wrapped.append((record_id, key, ring.wrap(key, record_id)))
        except BaseException as exc:
            errors.append(exc)

    def rotator() -> None:
        try:
            start.wait()
            for _ in range(20):
                ring.rotate()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=wrapper, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=rotator))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert ring.current_version() == 21 and ring.versions() == tuple(range(1, 22))
    assert 21 in {item.kek_version for _, _, item in wrapped}
    reopened = FileKeyring.open(path)
    for record_id, key, item in wrapped:
        assert ring.unwrap(item, record_id) == key
        assert reopened.unwrap(item, record_id) == key
