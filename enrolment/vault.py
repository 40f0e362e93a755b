"""The record vault: one SQLite file of sealed records, consents, tombstones and referrals.

Nothing personal is stored in clear: a record's details and the holder's
secrets are sealed under its own data key (enrolment.record_cipher), kept
here only wrapped by the key-encryption key. The clear columns are ids,
times, consent scopes and hashes, and lookup tags (an HMAC of the recovery
code). Erasure deletes the row's sealed parts and wrapped key in one
transaction, leaves a tombstone, and truncates the write-ahead log so the
old pages leave it too (``secure_delete`` zeroes them in the main file).

Like the template store: WAL, synchronous=FULL, secure_delete, a private
file (0600 in a 0700 folder). One connection behind a lock: protected
enrolment is a few operations a minute, not a search path.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrolment.consent import Scope, ScopeGrant
from enrolment.errors import KeyringError, RecordErased, RecordExists, RecordNotFound
from enrolment.kek import WrappedKey
from store.connections import open_private_file, sqlite_errors, write_transaction

__all__ = ["ConsentEntry", "RecordVault", "StoredRecord", "StoredReferral", "Tombstone", "backup_vault"]

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_SCHEMA = """
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


@dataclass(frozen=True)
class StoredRecord:
    """A record's row: ids in clear, everything personal sealed."""

    record_id: str
    gallery_id: str
    organisation: str  # the enrolling caller (NGO caseworker or kiosk id): who may act for the holder
    templates: int  # its reference ids in the gallery are f"{record_id}.{n}"
    wrapped_key: WrappedKey
    sealed_record: bytes
    sealed_secrets: bytes
    sealed_templates: bytes
    created_at: float

    @property
    def reference_ids(self) -> list[str]:
        return [f"{self.record_id}.{n}" for n in range(self.templates)]


@dataclass(frozen=True)
class ConsentEntry:
    """One scope's decision: granted or refused, with the text it was given under."""

    grant: ScopeGrant
    granted: bool
    language: str
    text_sha256: str
    decided_at: float
    withdrawn_at: float | None = None

    @property
    def in_force(self) -> bool:
        return self.granted and self.withdrawn_at is None


@dataclass(frozen=True)
class Tombstone:
    record_id: str
    erased_at: float
    requested_by: str
    receipt_sha256: str


@dataclass(frozen=True)
class StoredReferral:
    referral_id: int
    record_id: str
    channel: str
    raised_at: float
    sealed: bytes
    acknowledged_at: float | None


_REFERRAL_COLUMNS = "referral_id, record_id, channel, raised_at, sealed, acknowledged_at"


def _referral(row: tuple[Any, ...]) -> StoredReferral:
    return StoredReferral(int(row[0]), str(row[1]), str(row[2]), float(row[3]), bytes(row[4]), row[5])


class RecordVault:
    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> RecordVault:
        conn = open_private_file(path)
        try:
            with sqlite_errors("open the record vault"):
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > _SCHEMA_VERSION:
                    raise KeyringError(f"record vault {path} has schema {version}, newer than this code")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(action), write_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(action):
            yield self._conn

    # -- records -------------------------------------------------------------------

    def insert(self, record: StoredRecord, recovery_tag: bytes, consents: Iterable[ConsentEntry]) -> None:
        try:
            with self._write("store a record") as conn:
                if conn.execute(
                    "SELECT 1 FROM tombstones WHERE record_id = ?", (record.record_id,)
                ).fetchone():
                    raise RecordExists(f"record {record.record_id} was erased; its id is not reused")
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
                        recovery_tag,
                        record.created_at,
                    ),
                )
                conn.execute(
                    "INSERT INTO data_keys (record_id, kek_version, wrapped_key) VALUES (?, ?, ?)",
                    (record.record_id, record.wrapped_key.kek_version, record.wrapped_key.blob),
                )
                self._put_consents(conn, record.record_id, consents)
        except sqlite3.IntegrityError:
            raise RecordExists(f"record {record.record_id} (or its recovery code) already exists") from None

    def get(self, record_id: str) -> StoredRecord:
        with self._read("read a record") as conn:
            row = conn.execute(
                "SELECT r.record_id, gallery_id, organisation, templates, kek_version, wrapped_key,"
                " sealed_record, sealed_secrets, sealed_templates, created_at"
                " FROM records r JOIN data_keys k ON k.record_id = r.record_id WHERE r.record_id = ?",
                (record_id,),
            ).fetchone()
            if row is None:
                self._raise_missing(conn, record_id)
        return StoredRecord(
            record_id=row[0],
            gallery_id=row[1],
            organisation=row[2],
            templates=row[3],
            wrapped_key=WrappedKey(row[4], bytes(row[5])),
            sealed_record=bytes(row[6]),
            sealed_secrets=bytes(row[7]),
            sealed_templates=bytes(row[8]),
            created_at=row[9],
        )

    def _raise_missing(self, conn: sqlite3.Connection, record_id: str) -> None:
        if conn.execute("SELECT 1 FROM tombstones WHERE record_id = ?", (record_id,)).fetchone():
            raise RecordErased(f"record {record_id} was erased")
        raise RecordNotFound(f"no record {record_id}")

    def find_by_recovery_tag(self, tag: bytes) -> str:
        with self._read("find a record") as conn:
            row = conn.execute("SELECT record_id FROM records WHERE recovery_tag = ?", (tag,)).fetchone()
        if row is None:
            raise RecordNotFound("no record answers to this recovery code")
        return str(row[0])

    def records_in(self, gallery_id: str, grant: ScopeGrant) -> list[tuple[str, int]]:
        """(id, template count) of the gallery's records whose holders granted `grant`, not withdrawn."""
        with self._read("list consenting records") as conn:
            rows = conn.execute(
                "SELECT r.record_id, r.templates FROM records r JOIN consents c ON c.record_id = r.record_id"
                " WHERE r.gallery_id = ? AND c.scope = ? AND c.organisation = ? AND c.granted = 1"
                " AND c.withdrawn_at IS NULL ORDER BY r.record_id",
                (gallery_id, grant.scope.value, grant.organisation),
            ).fetchall()
        return [(str(row[0]), int(row[1])) for row in rows]

    # -- consent -------------------------------------------------------------------

    def consents(self, record_id: str) -> list[ConsentEntry]:
        with self._read("read consents") as conn:
            if conn.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone() is None:
                self._raise_missing(conn, record_id)
            rows = conn.execute(
                "SELECT scope, organisation, granted, language, text_sha256, decided_at, withdrawn_at"
                " FROM consents WHERE record_id = ? ORDER BY scope, organisation",
                (record_id,),
            ).fetchall()
        return [ConsentEntry(ScopeGrant(Scope(r[0]), r[1]), bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def put_consents(self, record_id: str, entries: Iterable[ConsentEntry]) -> None:
        """Record new decisions (a later grant replaces a refusal or a withdrawal, and vice versa)."""
        with self._write("record consent") as conn:
            if conn.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone() is None:
                self._raise_missing(conn, record_id)
            self._put_consents(conn, record_id, entries)

    @staticmethod
    def _put_consents(conn: sqlite3.Connection, record_id: str, entries: Iterable[ConsentEntry]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO consents (record_id, scope, organisation, granted, language,"
            " text_sha256, decided_at, withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    record_id,
                    e.grant.scope.value,
                    e.grant.organisation,
                    int(e.granted),
                    e.language,
                    e.text_sha256,
                    e.decided_at,
                    e.withdrawn_at,
                )
                for e in entries
            ],
        )

    # -- PIN attempts --------------------------------------------------------------

    def pin_locked_until(self, record_id: str) -> float:
        with self._read("read PIN state") as conn:
            row = conn.execute(
                "SELECT pin_locked_until FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:
                self._raise_missing(conn, record_id)
        return float(row[0])

    def pin_failed(self, record_id: str, now: float, max_failures: int, lock_s: float) -> int:
        """Count a wrong PIN; at `max_failures` in a row the record's PIN checks lock for `lock_s`."""
        with self._write("count a wrong PIN") as conn:
            row = conn.execute(
                "UPDATE records SET pin_failures = pin_failures + 1 WHERE record_id = ?"
                " RETURNING pin_failures",
                (record_id,),
            ).fetchone()
            if row is None:  # erased while its PIN was being checked
                self._raise_missing(conn, record_id)
            failures = int(row[0])
            if failures >= max_failures:
                conn.execute(
                    "UPDATE records SET pin_failures = 0, pin_locked_until = ? WHERE record_id = ?",
                    (now + lock_s, record_id),
                )
        return failures

    def pin_passed(self, record_id: str) -> None:
        with self._write("reset PIN failures") as conn:
            conn.execute(
                "UPDATE records SET pin_failures = 0, pin_locked_until = 0 WHERE record_id = ?", (record_id,)
            )

    # -- keys ----------------------------------------------------------------------

    def wrapped_keys(self, not_version: int | None = None) -> list[tuple[str, WrappedKey]]:
        """Every live record's wrapped data key (those under another KEK version than `not_version`)."""
        with self._read("read wrapped keys") as conn:
            rows = conn.execute(
                "SELECT record_id, kek_version, wrapped_key FROM data_keys WHERE kek_version IS NOT ?",
                (not_version,),
            ).fetchall()
        return [(str(r[0]), WrappedKey(int(r[1]), bytes(r[2]))) for r in rows]

    def replace_wrapped_keys(self, rewrapped: Iterable[tuple[str, WrappedKey]]) -> None:
        with self._write("store rewrapped keys") as conn:
            conn.executemany(
                "UPDATE data_keys SET kek_version = ?, wrapped_key = ? WHERE record_id = ?",
                [(w.kek_version, w.blob, record_id) for record_id, w in rewrapped],
            )

    def kek_versions_in_use(self) -> set[int]:
        with self._read("read KEK versions") as conn:
            return {int(r[0]) for r in conn.execute("SELECT DISTINCT kek_version FROM data_keys")}

    # -- referrals -----------------------------------------------------------------

    def add_referral(self, record_id: str, channel: str, raised_at: float, sealed: bytes) -> int:
        with self._write("raise a referral") as conn:
            cursor = conn.execute(
                "INSERT INTO referrals (record_id, channel, raised_at, sealed) VALUES (?, ?, ?, ?)",
                (record_id, channel, raised_at, sealed),
            )
        return int(cursor.lastrowid or 0)

    def referrals(self, channels: Iterable[str] | None, include_acknowledged: bool) -> list[StoredReferral]:
        wanted = None if channels is None else sorted(set(channels))
        with self._read("read referrals") as conn:
            rows = conn.execute(
                f"SELECT {_REFERRAL_COLUMNS} FROM referrals"
                " WHERE (? OR acknowledged_at IS NULL) ORDER BY referral_id",
                (int(include_acknowledged),),
            ).fetchall()
        return [_referral(r) for r in rows if wanted is None or r[2] in wanted]

    def referral(self, referral_id: int) -> StoredReferral:
        with self._read("read a referral") as conn:
            row = conn.execute(
                f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no referral {referral_id}")
        return _referral(row)

    def acknowledge_referral(self, referral_id: int, now: float) -> StoredReferral:
        with self._write("acknowledge a referral") as conn:
            conn.execute(
                "UPDATE referrals SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE referral_id = ?",
                (now, referral_id),
            )
            row = conn.execute(
                f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no referral {referral_id}")
        return _referral(row)

    # -- erasure and backups -------------------------------------------------------

    def erase(self, tombstone: Tombstone) -> None:
        """Delete the record, its consents and referrals; leave the tombstone; purge the WAL."""
        with self._write("erase a record") as conn:
            deleted = conn.execute("DELETE FROM records WHERE record_id = ?", (tombstone.record_id,)).rowcount
            if deleted == 0:
                self._raise_missing(conn, tombstone.record_id)
            conn.execute(
                "INSERT INTO tombstones (record_id, erased_at, requested_by, receipt_sha256)"
                " VALUES (?, ?, ?, ?)",
                (tombstone.record_id, tombstone.erased_at, tombstone.requested_by, tombstone.receipt_sha256),
            )
        self.purge_journal()

    def purge_journal(self) -> None:
        """Copy the WAL into the main file (zeroing freed pages) and truncate it to nothing."""
        with self._read("checkpoint the record vault") as conn:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning(
                "record vault checkpoint incomplete (a reader holds the WAL); old pages remain for now"
            )

    def tombstone(self, record_id: str) -> Tombstone | None:
        with self._read("read a tombstone") as conn:
            row = conn.execute(
                "SELECT record_id, erased_at, requested_by, receipt_sha256"
                " FROM tombstones WHERE record_id = ?",
                (record_id,),
            ).fetchone()
        return None if row is None else Tombstone(str(row[0]), float(row[1]), str(row[2]), str(row[3]))

    def count(self) -> int:
        with self._read("count records") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def backup(self, destination: Path) -> None:
        """A consistent copy of the vault (SQLite's online backup), made while the service runs."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        target = open_private_file(destination)
        try:
            with self._lock, sqlite_errors("back up the record vault"):
                self._conn.backup(target)
        finally:
            target.close()


def backup_vault(source: Path, destination: Path) -> None:
    """Copy a vault file consistently while the server may be writing it (read-only source)."""
    if not source.exists():
        raise RecordNotFound(f"no record vault at {source}")
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        target = open_private_file(destination)
        try:
            with sqlite_errors("back up the record vault"):
                reader.backup(target)
        finally:
            target.close()
    finally:
        reader.close()
