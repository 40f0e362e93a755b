"""The record vault: a real SQLite file of sealed records, consents, PIN state, referrals, tombstones.

PIN attempts, credentials, the erasure journal, referral organisations and the
schema-1 migration have their own test files (test_pin_attempts.py, ...).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from safepassage.enrolment.consent import Scope, ScopeGrant
from safepassage.enrolment.errors import KeyringError, PinLocked, RecordErased, RecordExists, RecordNotFound
from safepassage.enrolment.kek import WRAPPED_KEY_SIZE, WrappedKey
from safepassage.enrolment.pin_attempts import PinLockout
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_consents import ConsentEntry
from safepassage.enrolment.vault_erasures import Tombstone
from safepassage.enrolment.vault_file import backup_vault
from safepassage.enrolment.vault_records import StoredRecord

STORE = ScopeGrant(Scope.STORE)
BORDER = ScopeGrant(Scope.VERIFY_AT_BORDER)
DUPLICATE = ScopeGrant(Scope.DUPLICATE_CHECK)
SHARE_LA_STRADA = ScopeGrant(Scope.SHARE, "la-strada")
SHARE_OTHER = ScopeGrant(Scope.SHARE, "other-org")
TEXT_SHA = "ab" * 32
ORG = "la-strada"
T0 = 1_750_000_000.0


def _wrapped(version: int = 1) -> WrappedKey:
    return WrappedKey(version, bytes([1]) + version.to_bytes(4, "little") + os.urandom(WRAPPED_KEY_SIZE - 5))


def _record(
    record_id: str,
    gallery: str = "g1",
    templates: int = 2,
    kek_version: int = 1,
    org: str = "la-strada",
    credential_days: int = 365,
) -> StoredRecord:
    # Random "ciphertext" of a realistic size, distinct per record: easy to search for in the files.
    return StoredRecord(
        record_id=record_id,
        gallery_id=gallery,
        organisation=org,
        templates=templates,
        wrapped_key=_wrapped(kek_version),
        sealed_record=os.urandom(700),
        sealed_secrets=os.urandom(200),
        sealed_templates=os.urandom(2 * 512 + 45),
        created_at=T0,
        credential_days=credential_days,
    )


def _entry(
    grant: ScopeGrant, granted: bool = True, at: float = T0, withdrawn: float | None = None
) -> ConsentEntry:
    return ConsentEntry(grant, granted, "en", TEXT_SHA, at, withdrawn)


ALL = [_entry(STORE), _entry(BORDER), _entry(DUPLICATE), _entry(SHARE_LA_STRADA)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "records.sqlite3"


@pytest.fixture
def vault(path: Path) -> Iterator[RecordVault]:
    opened = RecordVault.open(path)
    yield opened
    opened.close()


def _insert(vault: RecordVault, record: StoredRecord, consents: list[ConsentEntry] | None = None) -> bytes:
    tag = os.urandom(32)
    vault.records.insert(record, tag, ALL if consents is None else consents)
    return tag


def _files(path: Path) -> bytes:
    return b"".join(
        Path(f"{path}{suffix}").read_bytes() for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists()
    )


def _sealed(record: StoredRecord) -> list[bytes]:
    return [record.sealed_record, record.sealed_secrets, record.sealed_templates, record.wrapped_key.blob]


# -- the file -----------------------------------------------------------------------


def test_the_file_is_private(vault: RecordVault, path: Path) -> None:
    _insert(vault, _record("pr-1"))
    for candidate in (path, Path(f"{path}-wal")):
        assert stat.S_IMODE(candidate.stat().st_mode) == 0o600, candidate
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_a_newer_schema_is_refused(path: Path) -> None:
    RecordVault.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=3")
    conn.close()
    with pytest.raises(KeyringError, match="newer"):
        RecordVault.open(path)


def test_reopening_keeps_everything(path: Path) -> None:
    first = RecordVault.open(path)
    record = _record("pr-1")
    tag = _insert(first, record)
    first.close()
    again = RecordVault.open(path)
    try:
        assert again.records.get("pr-1") == record
        assert again.records.find_by_recovery_tag(tag) == "pr-1"
        assert len(again.consents.of("pr-1")) == len(ALL)
    finally:
        again.close()


# -- records ------------------------------------------------------------------------


def test_insert_get_round_trip(vault: RecordVault) -> None:
    record = _record("pr-1", templates=3, kek_version=7)
    tag = _insert(vault, record)
    got = vault.records.get("pr-1")
    assert got == record
    assert got.wrapped_key.kek_version == 7 and got.wrapped_key.blob == record.wrapped_key.blob
    assert got.reference_ids == ["pr-1.0", "pr-1.1", "pr-1.2"]
    assert vault.records.find_by_recovery_tag(tag) == "pr-1"
    assert vault.records.count() == 1


def test_credential_days_are_kept_and_default_to_unknown(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1", credential_days=90))
    _insert(vault, replace(_record("pr-2"), credential_days=0))
    assert vault.records.get("pr-1").credential_days == 90
    assert vault.records.get("pr-2").credential_days == 0
    assert StoredRecord("x", "g", "o", 0, _wrapped(), b"", b"", b"", T0).credential_days == 0


def test_replace_secrets_changes_only_the_secrets(vault: RecordVault, path: Path) -> None:
    record = _record("pr-1")
    _insert(vault, record)
    vault.records.replace_secrets("pr-1", fresh := os.urandom(220))
    assert vault.records.get("pr-1") == replace(record, sealed_secrets=fresh)
    with pytest.raises(RecordNotFound):
        vault.records.replace_secrets("pr-2", fresh)
    vault.erasures.erase(Tombstone("pr-1", T0, "holder", "00" * 32))
    with pytest.raises(RecordErased):
        vault.records.replace_secrets("pr-1", fresh)


def test_sealed_templates_streams_every_live_record_in_chunks(vault: RecordVault) -> None:
    records = {
        f"pr-{n:04d}": _record(f"pr-{n:04d}", gallery=f"g{n % 3}", kek_version=1 + n % 2) for n in range(600)
    }
    for record in records.values():
        _insert(vault, record)
    vault.erasures.erase(Tombstone("pr-0007", T0, "holder", "00" * 32))
    stream = vault.records.sealed_templates()
    first = next(stream)
    # The lock is not held between rows: the vault stays usable mid-stream.
    assert vault.records.count() == 599
    _insert(vault, _record("pr-9999"))
    rest = list(stream)
    seen = {rid: (gallery, wrapped, sealed) for rid, gallery, wrapped, sealed in [first, *rest]}
    assert len(seen) == 1 + len(rest)  # no record twice
    assert "pr-0007" not in seen and "pr-9999" in seen
    del seen["pr-9999"]
    del records["pr-0007"]
    assert seen == {rid: (r.gallery_id, r.wrapped_key, r.sealed_templates) for rid, r in records.items()}


def test_an_empty_vault_streams_no_templates(vault: RecordVault) -> None:
    assert list(vault.records.sealed_templates()) == []


def test_missing_records_are_not_found(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    for call in (
        lambda: vault.records.get("pr-2"),
        lambda: vault.consents.of("pr-2"),
        lambda: vault.consents.put("pr-2", [_entry(BORDER)]),
        lambda: vault.pins.locked_until("pr-2"),
        lambda: vault.records.find_by_recovery_tag(os.urandom(32)),
        lambda: vault.erasures.erase(Tombstone("pr-2", T0, "holder", "00" * 32)),
    ):
        with pytest.raises(RecordNotFound):
            call()
    assert vault.erasures.tombstone("pr-2") is None


def test_a_duplicate_id_is_refused_and_changes_nothing(vault: RecordVault) -> None:
    original = _record("pr-1")
    tag = _insert(vault, original)
    with pytest.raises(RecordExists):
        _insert(vault, _record("pr-1", gallery="g2"), [_entry(STORE)])
    assert vault.records.get("pr-1") == original
    assert vault.records.find_by_recovery_tag(tag) == "pr-1"
    assert len(vault.consents.of("pr-1")) == len(ALL)
    assert vault.records.count() == 1


def test_a_duplicate_recovery_tag_is_refused_and_stores_nothing(vault: RecordVault) -> None:
    tag = _insert(vault, _record("pr-1"))
    with pytest.raises(RecordExists):
        vault.records.insert(_record("pr-2"), tag, ALL)
    with pytest.raises(RecordNotFound):
        vault.records.get("pr-2")
    assert vault.records.find_by_recovery_tag(tag) == "pr-1"
    assert vault.records.count() == 1
    assert vault.records.consenting("g1", DUPLICATE) == [("pr-1", 2)]


# -- consent ------------------------------------------------------------------------


def test_consents_are_kept_per_scope_and_organisation(vault: RecordVault) -> None:
    refused = [_entry(STORE), _entry(BORDER, granted=False), _entry(SHARE_OTHER, granted=False)]
    _insert(vault, _record("pr-1"), refused)
    entries = vault.consents.of("pr-1")
    assert entries == sorted(refused, key=lambda e: (e.grant.scope.value, e.grant.organisation))
    by_grant = {e.grant: e for e in entries}
    assert by_grant[STORE].in_force and not by_grant[BORDER].in_force
    assert not by_grant[SHARE_OTHER].granted and SHARE_LA_STRADA not in by_grant


def test_put_consents_replaces_and_withdraws(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"), [_entry(STORE), _entry(BORDER, granted=False), _entry(DUPLICATE)])
    vault.consents.put(
        "pr-1",
        [
            _entry(BORDER, granted=True, at=T0 + 10),  # a later grant replaces the refusal
            _entry(DUPLICATE, granted=True, at=T0, withdrawn=T0 + 20),  # withdrawn
            _entry(SHARE_LA_STRADA, at=T0 + 30),  # new
        ],
    )
    by_grant = {e.grant: e for e in vault.consents.of("pr-1")}
    assert len(by_grant) == 4
    assert by_grant[BORDER].in_force and by_grant[BORDER].decided_at == T0 + 10
    assert by_grant[DUPLICATE].granted and not by_grant[DUPLICATE].in_force
    assert by_grant[DUPLICATE].withdrawn_at == T0 + 20
    assert by_grant[SHARE_LA_STRADA].in_force and by_grant[STORE].in_force
    # And back: granting again after a withdrawal is in force again.
    vault.consents.put("pr-1", [_entry(DUPLICATE, at=T0 + 40)])
    assert {e.grant: e for e in vault.consents.of("pr-1")}[DUPLICATE].in_force


def test_records_in_lists_only_consents_in_force_per_gallery_and_organisation(vault: RecordVault) -> None:
    _insert(vault, _record("pr-a", templates=1), ALL)
    _insert(vault, _record("pr-b", templates=3), [_entry(STORE), _entry(DUPLICATE, granted=False)])
    _insert(vault, _record("pr-c", templates=2), [_entry(STORE), _entry(DUPLICATE)])
    _insert(vault, _record("pr-d", gallery="g2"), ALL)
    _insert(vault, _record("pr-e"), [_entry(STORE), _entry(SHARE_OTHER)])
    assert vault.records.consenting("g1", DUPLICATE) == [("pr-a", 1), ("pr-c", 2)]
    assert vault.records.consenting("g2", DUPLICATE) == [("pr-d", 2)]
    assert vault.records.consenting("g3", DUPLICATE) == []
    assert vault.records.consenting("g1", SHARE_LA_STRADA) == [("pr-a", 1)]
    assert vault.records.consenting("g1", SHARE_OTHER) == [("pr-e", 2)]
    assert vault.records.consenting("g1", ScopeGrant(Scope.SHARE, "nobody")) == []
    assert [r for r, _ in vault.records.consenting("g1", STORE)] == ["pr-a", "pr-b", "pr-c", "pr-e"]

    vault.consents.put("pr-c", [_entry(DUPLICATE, withdrawn=T0 + 5)])
    assert vault.records.consenting("g1", DUPLICATE) == [("pr-a", 1)]
    vault.consents.put("pr-b", [_entry(DUPLICATE, at=T0 + 6)])
    assert vault.records.consenting("g1", DUPLICATE) == [("pr-a", 1), ("pr-b", 3)]


# -- PIN attempts -------------------------------------------------------------------


def test_wrong_pins_lock_and_a_right_one_resets(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    _insert(vault, _record("pr-2"))

    def wrong(at: float) -> object:
        vault.pins.reserve("pr-1", at, max_failures=3)
        return vault.pins.failed("pr-1", at, max_failures=3, lock_s=900.0)

    assert vault.pins.locked_until("pr-1") == 0.0
    assert [wrong(T0) for _ in range(2)] == [None, None]
    assert vault.pins.locked_until("pr-1") == 0.0
    lockout = wrong(T0 + 1)
    assert lockout == PinLockout(1, T0 + 901.0)
    assert vault.pins.locked_until("pr-1") == T0 + 901.0
    assert vault.pins.locked_until("pr-2") == 0.0  # per record
    with pytest.raises(PinLocked):
        vault.pins.reserve("pr-1", T0 + 900, max_failures=3)
    # The count starts again after a lock.
    assert wrong(T0 + 902) is None
    vault.pins.passed("pr-1")
    assert vault.pins.locked_until("pr-1") == 0.0
    assert [wrong(T0 + 903) for _ in range(2)] == [None, None]  # reset to zero


def test_pin_state_survives_reopening(path: Path) -> None:
    first = RecordVault.open(path)
    _insert(first, _record("pr-1"))
    first.pins.reserve("pr-1", T0, max_failures=1)
    assert first.pins.failed("pr-1", T0, max_failures=1, lock_s=60.0) == PinLockout(1, T0 + 60.0)
    first.close()
    again = RecordVault.open(path)
    try:
        assert again.pins.locked_until("pr-1") == T0 + 60.0
    finally:
        again.close()


def test_a_wrong_pin_counted_after_erasure_says_erased(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    vault.erasures.erase(Tombstone("pr-1", T0, "holder", "00" * 32))
    with pytest.raises(RecordErased):
        vault.pins.failed("pr-1", T0, max_failures=5, lock_s=900.0)


# -- keys ---------------------------------------------------------------------------


def test_wrapped_keys_and_their_replacement(vault: RecordVault) -> None:
    records = {r.record_id: r for r in (_record("pr-1", kek_version=1), _record("pr-2", kek_version=2))}
    records["pr-3"] = _record("pr-3", kek_version=2)
    for record in records.values():
        _insert(vault, record)
    assert dict(vault.data_keys.wrapped()) == {rid: r.wrapped_key for rid, r in records.items()}
    assert dict(vault.data_keys.wrapped(not_version=2)) == {"pr-1": records["pr-1"].wrapped_key}
    assert dict(vault.data_keys.wrapped(not_version=9)).keys() == records.keys()
    assert vault.data_keys.kek_versions_in_use() == {1, 2}

    fresh = {"pr-1": _wrapped(3), "pr-2": _wrapped(3)}
    vault.data_keys.replace(fresh.items())
    assert vault.data_keys.kek_versions_in_use() == {2, 3}
    assert vault.records.get("pr-1").wrapped_key == fresh["pr-1"]
    assert vault.records.get("pr-1").sealed_record == records["pr-1"].sealed_record  # nothing else changes
    assert dict(vault.data_keys.wrapped(not_version=3)) == {"pr-3": records["pr-3"].wrapped_key}

    vault.erasures.erase(Tombstone("pr-3", T0, "holder", "00" * 32))
    assert vault.data_keys.kek_versions_in_use() == {3}
    assert dict(vault.data_keys.wrapped()).keys() == {"pr-1", "pr-2"}


def test_an_empty_vault_uses_no_versions(vault: RecordVault) -> None:
    assert vault.data_keys.kek_versions_in_use() == set()
    assert vault.data_keys.wrapped() == []
    vault.data_keys.replace([])


# -- referrals ----------------------------------------------------------------------


def test_referrals_by_channel_and_acknowledgement(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    _insert(vault, _record("pr-2"))
    first = vault.referrals.add("pr-1", ORG, "la-strada-hotline", T0, b"sealed-1")
    second = vault.referrals.add("pr-2", ORG, "other-channel", T0 + 1, b"sealed-2")
    third = vault.referrals.add("pr-1", ORG, "la-strada-hotline", T0 + 2, b"sealed-3")
    assert first < second < third

    everything = vault.referrals.for_organisation(ORG, None, include_acknowledged=False)
    assert [r.referral_id for r in everything] == [first, second, third]
    assert everything[0].record_id == "pr-1" and everything[0].sealed == b"sealed-1"
    assert everything[0].organisation == ORG
    assert everything[0].raised_at == T0 and everything[0].acknowledged_at is None
    assert [r.referral_id for r in vault.referrals.for_organisation(ORG, ["la-strada-hotline"], False)] == [
        first,
        third,
    ]
    assert [
        r.referral_id for r in vault.referrals.for_organisation(ORG, ["other-channel", "nowhere"], False)
    ] == [second]
    assert vault.referrals.for_organisation(ORG, ["nowhere"], False) == []

    acknowledged = vault.referrals.acknowledge(first, T0 + 100)
    assert acknowledged.referral_id == first and acknowledged.acknowledged_at == T0 + 100
    assert [
        r.referral_id for r in vault.referrals.for_organisation(ORG, None, include_acknowledged=False)
    ] == [second, third]
    listed = vault.referrals.for_organisation(ORG, ["la-strada-hotline"], include_acknowledged=True)
    assert [(r.referral_id, r.acknowledged_at) for r in listed] == [(first, T0 + 100), (third, None)]
    # Acknowledging again keeps the first time.
    assert vault.referrals.acknowledge(first, T0 + 500).acknowledged_at == T0 + 100
    with pytest.raises(RecordNotFound):
        vault.referrals.acknowledge(third + 100, T0)


def test_referrals_die_with_their_record(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    _insert(vault, _record("pr-2"))
    gone = vault.referrals.add("pr-1", ORG, "hotline", T0, b"sealed-1")
    vault.referrals.acknowledge(vault.referrals.add("pr-1", ORG, "hotline", T0, b"sealed-1b"), T0 + 1)
    kept = vault.referrals.add("pr-2", ORG, "hotline", T0, b"sealed-2")
    vault.erasures.erase(Tombstone("pr-1", T0 + 10, "holder", "00" * 32))
    assert [
        r.referral_id for r in vault.referrals.for_organisation(ORG, None, include_acknowledged=True)
    ] == [kept]
    with pytest.raises(RecordNotFound):
        vault.referrals.acknowledge(gone, T0 + 20)


# -- erasure ------------------------------------------------------------------------


def test_erasure_leaves_only_a_tombstone(vault: RecordVault, path: Path) -> None:
    victim, keeper = _record("pr-victim"), _record("pr-keeper")
    victim_tag = _insert(vault, victim)
    _insert(vault, keeper)
    vault.referrals.add("pr-victim", ORG, "hotline", T0, os.urandom(120))
    vault.credentials.add("cred-victim", "pr-victim", T0, T0 + 86_400)
    tombstone = Tombstone("pr-victim", T0 + 60, "ngo_caseworker:case-1", "cd" * 32, "signed receipt")
    vault.erasures.erase(tombstone)

    assert vault.erasures.tombstone("pr-victim") == tombstone
    assert vault.erasures.tombstone("pr-keeper") is None
    for call in (
        lambda: vault.records.get("pr-victim"),
        lambda: vault.consents.of("pr-victim"),
        lambda: vault.consents.put("pr-victim", [_entry(BORDER)]),
        lambda: vault.pins.locked_until("pr-victim"),
        lambda: vault.erasures.erase(Tombstone("pr-victim", T0 + 61, "holder", "ef" * 32)),
    ):
        with pytest.raises(RecordErased):
            call()
    with pytest.raises(RecordNotFound):
        vault.records.find_by_recovery_tag(victim_tag)
    assert vault.erasures.tombstone("pr-victim") == tombstone  # a second erasure changes nothing
    assert vault.records.count() == 1 and vault.records.get("pr-keeper") == keeper
    assert vault.records.consenting("g1", DUPLICATE) == [("pr-keeper", 2)]
    # Its consents went with it (foreign keys cascade), not just out of sight.
    conn = sqlite3.connect(path)
    try:
        for table in ("records", "data_keys", "consents", "referrals", "credentials"):
            count = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE record_id = 'pr-victim'").fetchone()[0]
            assert count == 0, table
    finally:
        conn.close()


def test_an_erased_id_is_never_reused(vault: RecordVault) -> None:
    _insert(vault, _record("pr-1"))
    vault.erasures.erase(Tombstone("pr-1", T0, "holder", "00" * 32))
    with pytest.raises(RecordExists, match="erased"):
        _insert(vault, _record("pr-1"))
    with pytest.raises(RecordErased):
        vault.records.get("pr-1")
    assert vault.records.count() == 0


def test_erasure_purges_the_wal_and_zeroes_the_sealed_bytes(vault: RecordVault, path: Path) -> None:
    victim, keeper = _record("pr-victim"), _record("pr-keeper")
    _insert(vault, victim)
    _insert(vault, keeper)
    vault.referrals.add("pr-victim", ORG, "hotline", T0, referral := os.urandom(150))
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 0
    before = _files(path)
    assert all(blob in before for blob in _sealed(victim))  # the search finds them when present

    vault.erasures.erase(Tombstone("pr-victim", T0, "holder", "00" * 32))

    assert wal.stat().st_size == 0
    after = _files(path)
    for blob in [*_sealed(victim), referral]:
        assert blob not in after
        assert blob[:48] not in after and blob[-48:] not in after
    for blob in _sealed(keeper):  # the live record's sealed parts are in the main file, intact
        assert blob in path.read_bytes()


# -- backups ------------------------------------------------------------------------


def _same_rows(copy_path: Path, records: list[StoredRecord], tags: list[bytes], erased: Tombstone) -> None:
    copy = RecordVault.open(copy_path)
    try:
        assert copy.records.count() == len(records)
        for record, tag in zip(records, tags, strict=True):
            assert copy.records.get(record.record_id) == record
            assert copy.records.find_by_recovery_tag(tag) == record.record_id
            assert len(copy.consents.of(record.record_id)) == len(ALL)
        assert copy.erasures.tombstone(erased.record_id) == erased
        assert [r.sealed for r in copy.referrals.for_organisation(ORG, None, include_acknowledged=True)] == [
            b"sealed-referral"
        ]
        assert copy.pins.locked_until(records[0].record_id) == T0 + 60
    finally:
        copy.close()
    assert stat.S_IMODE(copy_path.stat().st_mode) == 0o600


@pytest.fixture
def populated(vault: RecordVault) -> tuple[RecordVault, list[StoredRecord], list[bytes], Tombstone]:
    records = [_record("pr-1"), _record("pr-2", gallery="g2", templates=1)]
    tags = [_insert(vault, record) for record in records]
    _insert(vault, _record("pr-3"))
    erased = Tombstone("pr-3", T0, "holder", "aa" * 32)
    vault.erasures.erase(erased)
    vault.referrals.add("pr-1", ORG, "hotline", T0, b"sealed-referral")
    vault.pins.reserve("pr-1", T0, max_failures=1)
    vault.pins.failed("pr-1", T0, max_failures=1, lock_s=60.0)  # in the WAL, not yet checkpointed
    return vault, records, tags, erased


def test_online_backup_holds_the_same_rows(
    populated: tuple[RecordVault, list[StoredRecord], list[bytes], Tombstone], tmp_path: Path
) -> None:
    vault, records, tags, erased = populated
    destination = tmp_path / "backups" / "copy.sqlite3"
    vault.backup(destination)
    _same_rows(destination, records, tags, erased)
    assert vault.records.count() == 2  # the live vault goes on
    _insert(vault, _record("pr-4"))
    _same_rows(destination, records, tags, erased)  # a copy: later writes are not in it


def test_backup_vault_copies_a_file_in_use(
    populated: tuple[RecordVault, list[StoredRecord], list[bytes], Tombstone], tmp_path: Path
) -> None:
    vault, records, tags, erased = populated
    destination = tmp_path / "offline" / "copy.sqlite3"
    backup_vault(vault.path, destination)
    _same_rows(destination, records, tags, erased)
    with pytest.raises(RecordNotFound):
        backup_vault(tmp_path / "absent.sqlite3", tmp_path / "never.sqlite3")
    assert not (tmp_path / "never.sqlite3").exists()
