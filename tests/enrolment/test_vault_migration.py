"""A schema-1 vault file (as the code before issue 14 wrote it) is migrated in place to schema 2.

The version-1 schema and row-writing SQL below are copied verbatim from that code,
so the file under test is what a deployed server holds.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from safepassage.core.sqlite import open_private_file
from safepassage.enrolment.consent import Scope, ScopeGrant
from safepassage.enrolment.errors import PinLocked, RecordErased
from safepassage.enrolment.kek import WrappedKey
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_consents import ConsentEntry
from safepassage.enrolment.vault_erasures import PendingErasure, Tombstone
from safepassage.enrolment.vault_file import VAULT_ERRORS
from safepassage.enrolment.vault_records import StoredRecord
from safepassage.enrolment.vault_schema import SCHEMA_VERSION
from tests.enrolment.test_vault import ALL, T0, _record, _wrapped

V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    gallery_id TEXT NOT NULL,
    organisation TEXT NOT NULL,
    templates INTEGER NOT NULL,
    sealed_record BLOB NOT NULL,
    sealed_secrets BLOB NOT NULL,
    sealed_templates BLOB NOT NULL,
    recovery_tag BLOB NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    pin_failures INTEGER NOT NULL DEFAULT 0,
    pin_locked_until REAL NOT NULL DEFAULT 0
);
-- Apart from the records, so a KEK rotation rewrites 80-byte rows, never the sealed records
-- (a row whose size changes is rewritten whole, document photos included).
CREATE TABLE IF NOT EXISTS data_keys (
    record_id TEXT PRIMARY KEY REFERENCES records (record_id) ON DELETE CASCADE,
    kek_version INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS data_keys_by_kek ON data_keys (kek_version);
CREATE TABLE IF NOT EXISTS consents (
    record_id TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    organisation TEXT NOT NULL,
    granted INTEGER NOT NULL,
    language TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    decided_at REAL NOT NULL,
    withdrawn_at REAL,
    PRIMARY KEY (record_id, scope, organisation)
);
CREATE TABLE IF NOT EXISTS tombstones (
    record_id TEXT PRIMARY KEY,
    erased_at REAL NOT NULL,
    requested_by TEXT NOT NULL,
    receipt_sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
    referral_id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    raised_at REAL NOT NULL,
    sealed BLOB NOT NULL,
    acknowledged_at REAL
);
CREATE INDEX IF NOT EXISTS referrals_by_channel ON referrals (channel, acknowledged_at);
"""

# Schema-1 rows carried the enrolling caller's label as the organisation.
V1_RECORDS = [
    _record("pr-1", org="ngo_caseworker:case-1"),
    _record("pr-2", gallery="g2", templates=1, kek_version=2, org="kiosk:k-3"),
    _record("pr-3", org="ngo_caseworker:case-1"),
]
V1_CONSENTS = {
    "pr-1": ALL,
    "pr-2": [
        ConsentEntry(ScopeGrant(Scope.STORE), True, "uk", "cd" * 32, T0),
        ConsentEntry(ScopeGrant(Scope.DUPLICATE_CHECK), True, "uk", "cd" * 32, T0, T0 + 50),
    ],
    "pr-3": ALL,
}


def _write_v1(path: Path) -> dict[str, bytes]:
    """A schema-1 file with records, keys, consents, PIN state, referrals and a tombstone; the tags."""
    conn = open_private_file(path, VAULT_ERRORS)  # WAL, 16 KiB pages: as the version-1 code opened it
    tags = {}
    try:
        conn.executescript(V1_SCHEMA)
        conn.execute("PRAGMA user_version=1")
        for record in V1_RECORDS:
            tags[record.record_id] = tag = os.urandom(32)
            conn.execute(
                "INSERT INTO records (record_id, gallery_id, organisation, templates,"
                " sealed_record, sealed_secrets, sealed_templates, recovery_tag, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.record_id,
                    record.gallery_id,
                    record.organisation,
                    record.templates,
                    record.sealed_record,
                    record.sealed_secrets,
                    record.sealed_templates,
                    tag,
                    record.created_at,
                ),
            )
            conn.execute(
                "INSERT INTO data_keys (record_id, kek_version, wrapped_key) VALUES (?, ?, ?)",
                (record.record_id, record.wrapped_key.kek_version, record.wrapped_key.blob),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO consents (record_id, scope, organisation, granted, language,"
                " text_sha256, decided_at, withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        record.record_id,
                        e.grant.scope.value,
                        e.grant.organisation,
                        int(e.granted),
                        e.language,
                        e.text_sha256,
                        e.decided_at,
                        e.withdrawn_at,
                    )
                    for e in V1_CONSENTS[record.record_id]
                ],
            )
        conn.execute(
            "UPDATE records SET pin_failures = 2, pin_locked_until = ? WHERE record_id = 'pr-1'", (T0 + 900,)
        )
        referrals = [
            ("pr-1", "hotline", T0, b"sealed-1"),
            ("pr-2", "kiosk-line", T0 + 1, b"sealed-2"),
            ("pr-3", "hotline", T0 + 2, b"sealed-3"),
        ]
        conn.executemany(
            "INSERT INTO referrals (record_id, channel, raised_at, sealed) VALUES (?, ?, ?, ?)", referrals
        )
        conn.execute("UPDATE referrals SET acknowledged_at = ? WHERE referral_id = 2", (T0 + 5,))
        # The version-1 erasure of pr-3: delete (cascading) and a tombstone.
        conn.execute("DELETE FROM records WHERE record_id = 'pr-3'")
        conn.execute(
            "INSERT INTO tombstones (record_id, erased_at, requested_by, receipt_sha256) VALUES (?, ?, ?, ?)",
            ("pr-3", T0 + 60, "holder", "ee" * 32),
        )
    finally:
        conn.close()
    return tags


@pytest.fixture
def v1_path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "records.sqlite3"


@pytest.fixture
def migrated(v1_path: Path) -> Iterator[tuple[RecordVault, dict[str, bytes]]]:
    tags = _write_v1(v1_path)
    vault = RecordVault.open(v1_path)
    yield vault, tags
    vault.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _shape(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's columns (name, type, not null, default, pk) and every index's columns."""
    conn = sqlite3.connect(path)
    try:
        shape: dict[str, list[tuple[object, ...]]] = {}
        for kind, name, table in conn.execute("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name"):
            if kind == "table":
                shape[name] = [tuple(c[1:]) for c in conn.execute(f"PRAGMA table_info({name})")]
                shape[f"{name} foreign keys"] = [
                    tuple(f[2:]) for f in conn.execute(f"PRAGMA foreign_key_list({name})")
                ]
            elif kind == "index":
                shape[name] = [(table, *c[1:]) for c in conn.execute(f"PRAGMA index_info({name})")]
        return shape
    finally:
        conn.close()


def test_every_row_is_still_readable(migrated: tuple[RecordVault, dict[str, bytes]], v1_path: Path) -> None:
    vault, tags = migrated
    assert _version(v1_path) == SCHEMA_VERSION == 2
    assert vault.records.count() == 2
    for record in V1_RECORDS[:2]:
        got = vault.records.get(record.record_id)
        assert got == replace(record, credential_days=0)  # unknown in schema 1
        assert got.organisation == record.organisation  # kept as it was
        assert vault.records.find_by_recovery_tag(tags[record.record_id]) == record.record_id
        assert vault.consents.of(record.record_id) == sorted(
            V1_CONSENTS[record.record_id], key=lambda e: (e.grant.scope.value, e.grant.organisation)
        )
    assert dict(vault.data_keys.wrapped()) == {r.record_id: r.wrapped_key for r in V1_RECORDS[:2]}
    assert vault.data_keys.kek_versions_in_use() == {1, 2}
    assert vault.records.consenting("g1", ScopeGrant(Scope.DUPLICATE_CHECK)) == [("pr-1", 2)]
    # Withdrawn stays withdrawn.
    assert vault.records.consenting("g2", ScopeGrant(Scope.DUPLICATE_CHECK)) == []
    assert sorted(rid for rid, *_ in vault.records.sealed_templates()) == ["pr-1", "pr-2"]

    # The tombstone, without a receipt (schema 1 kept only its hash).
    assert vault.erasures.tombstone("pr-3") == Tombstone("pr-3", T0 + 60, "holder", "ee" * 32, "")
    with pytest.raises(RecordErased):
        vault.records.get("pr-3")

    # Referrals take their record's organisation; acknowledgement times stay.
    case_1 = vault.referrals.for_organisation("ngo_caseworker:case-1", None, include_acknowledged=True)
    assert [(r.referral_id, r.record_id, r.channel, r.sealed) for r in case_1] == [
        (1, "pr-1", "hotline", b"sealed-1")
    ]
    kiosk = vault.referrals.for_organisation("kiosk:k-3", None, include_acknowledged=True)
    assert [(r.referral_id, r.acknowledged_at) for r in kiosk] == [(2, T0 + 5)]
    assert vault.referrals.for_organisation("kiosk:k-3", None, include_acknowledged=False) == []
    # AUTOINCREMENT carries on past the ids schema 1 used (3 died with pr-3).
    assert vault.referrals.add("pr-1", "la-strada", "hotline", T0 + 9, b"new") == 4


def test_pin_state_carries_over(migrated: tuple[RecordVault, dict[str, bytes]]) -> None:
    vault, _ = migrated
    assert vault.pins.locked_until("pr-1") == T0 + 900
    with pytest.raises(PinLocked):
        vault.pins.reserve("pr-1", T0 + 10, max_failures=3)
    vault.pins.reserve("pr-1", T0 + 900, max_failures=3)  # the two failures still count
    assert vault.pins.failed("pr-1", T0 + 900, max_failures=3, lock_s=60.0) is not None
    assert vault.pins.locked_until("pr-2") == 0.0


def test_the_new_tables_work_on_a_migrated_file(migrated: tuple[RecordVault, dict[str, bytes]]) -> None:
    vault, _ = migrated
    vault.credentials.add("c-1", "pr-1", T0, T0 + 100)
    vault.credentials.add("c-2", "pr-1", T0 + 1, T0 + 100)
    vault.erasures.begin("pr-1", "holder", T0 + 2)
    vault.erasures.erase(Tombstone("pr-1", T0 + 3, "holder", "ab" * 32, "receipt"))
    assert vault.credentials.revoked(T0 + 3) == [("c-1", T0 + 100), ("c-2", T0 + 100)]
    assert vault.erasures.pending() == [PendingErasure("pr-1", "holder", T0 + 2)]
    assert vault.erasures.tombstone("pr-1") == Tombstone("pr-1", T0 + 3, "holder", "ab" * 32, "receipt")
    new = StoredRecord("pr-4", "g1", "la-strada", 1, _wrapped(), b"r", b"s", b"t", T0, credential_days=30)
    vault.records.insert(new, os.urandom(32), ALL)
    assert vault.records.get("pr-4") == new


def test_a_migrated_file_has_the_schema_of_a_new_one(v1_path: Path, tmp_path: Path) -> None:
    _write_v1(v1_path)
    RecordVault.open(v1_path).close()
    fresh = tmp_path / "fresh" / "records.sqlite3"
    RecordVault.open(fresh).close()
    assert _shape(v1_path) == _shape(fresh)
    conn = sqlite3.connect(v1_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    assert stat.S_IMODE(v1_path.stat().st_mode) == 0o600


def test_reopening_a_migrated_file_changes_nothing(
    migrated: tuple[RecordVault, dict[str, bytes]], v1_path: Path
) -> None:
    vault, _ = migrated
    before = [
        vault.records.get("pr-1"),
        vault.referrals.for_organisation("kiosk:k-3", None, True),
        vault.erasures.tombstone("pr-3"),
    ]
    vault.close()
    again = RecordVault.open(v1_path)
    try:
        assert [
            again.records.get("pr-1"),
            again.referrals.for_organisation("kiosk:k-3", None, True),
            again.erasures.tombstone("pr-3"),
        ] == before
        assert _version(v1_path) == 2
    finally:
        again.close()


def test_a_failed_migration_leaves_the_file_at_schema_1(v1_path: Path) -> None:
    _write_v1(v1_path)
    # A damaged schema-1 file: the third step of the migration (tombstones.receipt) fails,
    # after the records table was already altered.
    conn = sqlite3.connect(v1_path)
    conn.execute("ALTER TABLE tombstones ADD COLUMN receipt TEXT")
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.OperationalError, match="duplicate column"):
        RecordVault.open(v1_path)
    assert _version(v1_path) == 1
    conn = sqlite3.connect(v1_path)
    try:
        columns = [c[1] for c in conn.execute("PRAGMA table_info(records)")]
        assert "credential_days" not in columns and "pin_lockouts" not in columns  # rolled back
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "credentials" not in tables and "pending_erasures" not in tables
    finally:
        conn.close()


def test_wrapped_keys_read_back_byte_for_byte(migrated: tuple[RecordVault, dict[str, bytes]]) -> None:
    vault, _ = migrated
    for record in V1_RECORDS[:2]:
        stored = vault.records.get(record.record_id).wrapped_key
        assert stored == WrappedKey(record.wrapped_key.kek_version, record.wrapped_key.blob)
