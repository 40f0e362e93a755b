"""Key custody with a real keyring file, record cipher and vault: rotation, rewrapping, crypto-shredding."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safepassage.enrolment.custodian import KeyCustodian, Rotation
from safepassage.enrolment.errors import KeyDestroyed, RecordErased, RecordIntegrityError
from safepassage.enrolment.kek import FileKeyring, WrappedKey
from safepassage.enrolment.record_cipher import RecordCipher
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_erasures import Tombstone
from safepassage.enrolment.vault_records import StoredRecord

PARTS = ("record", "secrets", "templates")


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring.open(tmp_path / "keys" / "kek.json", create=True)


@pytest.fixture
def cipher(keyring: FileKeyring) -> RecordCipher:
    return RecordCipher(keyring)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[RecordVault]:
    opened = RecordVault.open(tmp_path / "vault" / "records.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def custodian(vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher) -> KeyCustodian:
    return KeyCustodian(vault, keyring, cipher)


def _payloads(record_id: str) -> dict[str, bytes]:
    return {part: f"{part} of {record_id}: ".encode() + os.urandom(64) for part in PARTS}


def _stored(cipher: RecordCipher, record_id: str) -> tuple[StoredRecord, dict[str, bytes]]:
    """A record sealed under a fresh data key wrapped by the keyring's current version."""
    key, wrapped = cipher.new_key(record_id)
    payloads = _payloads(record_id)
    sealed = {part: RecordCipher.seal(key, part, payloads[part]) for part in PARTS}
    record = StoredRecord(
        record_id=record_id,
        gallery_id="protected",
        organisation="ngo_caseworker:case-1",
        templates=1,
        wrapped_key=wrapped,
        sealed_record=sealed["record"],
        sealed_secrets=sealed["secrets"],
        sealed_templates=sealed["templates"],
        created_at=1_750_000_000.0,
    )
    return record, payloads


def _enrol(vault: RecordVault, cipher: RecordCipher, record_id: str) -> dict[str, bytes]:
    record, payloads = _stored(cipher, record_id)
    vault.records.insert(record, os.urandom(32), [])
    return payloads


def _opens(vault: RecordVault, cipher: RecordCipher, record_id: str, payloads: dict[str, bytes]) -> None:
    stored = vault.records.get(record_id)
    key = cipher.data_key(record_id, stored.wrapped_key)
    blobs = {
        "record": stored.sealed_record,
        "secrets": stored.sealed_secrets,
        "templates": stored.sealed_templates,
    }
    for part in PARTS:
        assert RecordCipher.open(key, part, blobs[part]) == payloads[part], (record_id, part)


def test_rotation_rewraps_every_record_and_destroys_the_old_versions(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    records = {f"pr-{n}": _enrol(vault, cipher, f"pr-{n}") for n in range(3)}
    keyring.rotate()  # version 2: later enrolments use it, the first three stay under 1
    records |= {f"pr-{n}": _enrol(vault, cipher, f"pr-{n}") for n in range(3, 5)}
    assert vault.data_keys.kek_versions_in_use() == {1, 2}
    sealed_before = {rid: vault.records.get(rid).sealed_record for rid in records}

    rotation = custodian.rotate()

    assert rotation == Rotation(kek_version=3, rewrapped=5, destroyed=(1, 2))
    assert keyring.versions() == (3,) and keyring.current_version() == 3
    assert keyring.destroyed_versions() == (1, 2)
    assert FileKeyring.open(keyring.path).versions() == (3,)  # destroyed in the file, not only in memory
    assert vault.data_keys.kek_versions_in_use() == {3}
    for record_id, payloads in records.items():
        assert vault.records.get(record_id).wrapped_key.kek_version == 3
        # Rewrapped, not re-encrypted.
        assert vault.records.get(record_id).sealed_record == sealed_before[record_id]
        _opens(vault, cipher, record_id, payloads)


def test_rotating_again_and_an_empty_vault(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    assert custodian.rotate() == Rotation(2, 0, (1,))
    payloads = _enrol(vault, cipher, "pr-1")
    assert custodian.rotate() == Rotation(3, 1, (2,))
    assert custodian.rotate() == Rotation(4, 1, (3,))
    assert keyring.versions() == (4,) and keyring.destroyed_versions() == (1, 2, 3)
    _opens(vault, cipher, "pr-1", payloads)


def test_a_backup_from_before_a_rotation_cannot_be_unwrapped(
    vault: RecordVault, cipher: RecordCipher, custodian: KeyCustodian, tmp_path: Path
) -> None:
    records = {f"pr-{n}": _enrol(vault, cipher, f"pr-{n}") for n in range(4)}
    backup = tmp_path / "backups" / "before.sqlite3"
    vault.backup(backup)
    copy = RecordVault.open(backup)
    try:
        before = dict(copy.data_keys.wrapped())
        assert before.keys() == records.keys()
        for record_id, wrapped in before.items():
            cipher.data_key(record_id, wrapped)  # opens while its version lives

        custodian.rotate()

        for record_id, wrapped in dict(copy.data_keys.wrapped()).items():
            with pytest.raises(KeyDestroyed, match="destroyed"):
                cipher.data_key(record_id, wrapped)
            with pytest.raises(KeyDestroyed):
                cipher.rewrap(record_id, wrapped)
    finally:
        copy.close()
    for record_id, payloads in records.items():
        _opens(vault, cipher, record_id, payloads)


def test_a_version_still_in_use_is_never_destroyed(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    first = _enrol(vault, cipher, "pr-1")
    second = _enrol(vault, cipher, "pr-2")
    keyring.rotate()  # version 2 current; both records still under 1
    assert custodian.destroy_unused() == ()
    assert keyring.versions() == (1, 2)

    vault.data_keys.replace([("pr-1", cipher.rewrap("pr-1", vault.records.get("pr-1").wrapped_key))])
    assert vault.data_keys.kek_versions_in_use() == {1, 2}
    assert custodian.destroy_unused() == ()  # pr-2 still needs version 1
    _opens(vault, cipher, "pr-2", second)

    vault.data_keys.replace([("pr-2", cipher.rewrap("pr-2", vault.records.get("pr-2").wrapped_key))])
    assert custodian.destroy_unused() == (1,)
    assert keyring.versions() == (2,)
    assert custodian.destroy_unused() == ()  # the current version is never destroyed
    _opens(vault, cipher, "pr-1", first)
    _opens(vault, cipher, "pr-2", second)


def test_a_record_stored_under_an_old_version_during_rotation_survives_it(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    """An enrolment that wrapped its key just before the rotation and stores it just after."""
    existing = _enrol(vault, cipher, "pr-1")
    late, late_payloads = _stored(cipher, "pr-late")  # wrapped under version 1
    assert late.wrapped_key.kek_version == 1

    def store_late(doomed: tuple[int, ...]) -> None:
        assert doomed == (1,)
        vault.records.insert(late, os.urandom(32), [])

    rotation = custodian.rotate(before_destroy=store_late)

    assert rotation == Rotation(2, 1, ())  # version 1 spared: pr-late uses it
    assert keyring.versions() == (1, 2)
    _opens(vault, cipher, "pr-late", late_payloads)
    _opens(vault, cipher, "pr-1", existing)
    assert custodian.rotate() == Rotation(3, 2, (1, 2))  # the next rotation finishes the job
    _opens(vault, cipher, "pr-late", late_payloads)


def test_erasure_through_the_rotation_callback(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian, tmp_path: Path
) -> None:
    keeper = _enrol(vault, cipher, "pr-keeper")
    _enrol(vault, cipher, "pr-victim")
    keyring.rotate()
    other = _enrol(vault, cipher, "pr-other")  # under version 2
    backup = tmp_path / "backups" / "before-erasure.sqlite3"
    vault.backup(backup)
    seen: list[tuple[tuple[int, ...], tuple[int, ...], set[int]]] = []

    def shred(doomed: tuple[int, ...]) -> None:
        # Called after the rewrap, before anything is destroyed.
        seen.append((doomed, keyring.versions(), vault.data_keys.kek_versions_in_use()))
        vault.erasures.erase(Tombstone("pr-victim", 1_750_000_100.0, "holder", "ab" * 32))

    rotation = custodian.rotate(before_destroy=shred)

    assert seen == [((1, 2), (1, 2, 3), {3})]
    assert rotation == Rotation(3, 3, (1, 2))
    assert keyring.versions() == (3,)
    with pytest.raises(RecordErased):
        vault.records.get("pr-victim")
    _opens(vault, cipher, "pr-keeper", keeper)
    _opens(vault, cipher, "pr-other", other)
    copy = RecordVault.open(backup)
    try:
        old = dict(copy.data_keys.wrapped())
    finally:
        copy.close()
    assert old.keys() == {"pr-keeper", "pr-victim", "pr-other"}
    for record_id, wrapped in old.items():
        with pytest.raises(KeyDestroyed):
            cipher.data_key(record_id, wrapped)


def test_a_failing_callback_destroys_nothing(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    """A crash between the rewrap and the destruction: every record readable, the next rotation finishes."""
    payloads = _enrol(vault, cipher, "pr-1")

    def crash(doomed: tuple[int, ...]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        custodian.rotate(before_destroy=crash)
    assert keyring.versions() == (1, 2)
    assert vault.data_keys.kek_versions_in_use() == {2}
    _opens(vault, cipher, "pr-1", payloads)
    assert custodian.rotate() == Rotation(3, 1, (1, 2))
    _opens(vault, cipher, "pr-1", payloads)


def test_a_damaged_wrapped_key_stops_the_rotation_before_any_destruction(
    vault: RecordVault, keyring: FileKeyring, cipher: RecordCipher, custodian: KeyCustodian
) -> None:
    good = _enrol(vault, cipher, "pr-good")
    _enrol(vault, cipher, "pr-bad")
    wrapped = vault.records.get("pr-bad").wrapped_key
    damaged = bytearray(wrapped.blob)
    damaged[-1] ^= 0x01
    vault.data_keys.replace([("pr-bad", WrappedKey(wrapped.kek_version, bytes(damaged)))])

    with pytest.raises(RecordIntegrityError):
        custodian.rotate()

    assert 1 in keyring.versions()  # not destroyed: pr-good still needs it
    assert vault.data_keys.kek_versions_in_use() == {1}
    _opens(vault, cipher, "pr-good", good)
