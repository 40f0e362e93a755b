"""The record vault's SQLite file: one connection, its lock, the WAL purge and backups.

Like the template store: WAL, synchronous=FULL, secure_delete, a private
file (0600 in a 0700 folder); the recipe is :class:`safepassage.core.sqlite.Database`.
One connection behind a lock: protected enrolment is a few operations a minute,
not a search path. Every part of the vault (records, PIN attempts, credentials,
referrals, erasures) shares this one object, so each of its writes is one
``BEGIN IMMEDIATE`` transaction taken under the same lock, and another process
on the same file waits its turn.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NoReturn

from safepassage.core.sqlite import Database, SqliteErrors
from safepassage.enrolment.errors import RecordErased, RecordNotFound, VaultCorrupted, VaultUnavailable
from safepassage.enrolment.vault_schema import prepare_schema

__all__ = ["VAULT_ERRORS", "VaultFile", "backup_vault"]

log = logging.getLogger(__name__)

VAULT_ERRORS = SqliteErrors(unavailable=VaultUnavailable, corrupt=VaultCorrupted)
_BACKUP = "back up the record vault"


class VaultFile:
    """The open vault file. Use :meth:`open`; share it, never open the same path twice in a process."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.path = database.path

    @classmethod
    def open(cls, path: Path) -> VaultFile:
        """Open (or create) the file and bring its schema to the current version."""

        def prepare(conn: sqlite3.Connection) -> None:
            prepare_schema(conn, path)

        # shared: `records backup` reads it while the server runs
        return cls(Database.open(path, VAULT_ERRORS, prepare, action="open the record vault", shared=True))

    def close(self) -> None:
        self._db.close()

    def write(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction, committed (fsynced) on exit, rolled back if anything raises."""
        return self._db.write(action)

    def read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        """The connection, under the lock: nothing writes between the statements inside."""
        return self._db.read(action)

    @staticmethod
    def raise_missing(conn: sqlite3.Connection, record_id: str) -> NoReturn:
        """RecordErased if the id has a tombstone, else RecordNotFound."""
        if conn.execute("SELECT 1 FROM tombstones WHERE record_id = ?", (record_id,)).fetchone():
            raise RecordErased(f"record {record_id} was erased")
        raise RecordNotFound(f"no record {record_id}")

    @classmethod
    def require_record(cls, conn: sqlite3.Connection, record_id: str) -> None:
        """Raise as :meth:`raise_missing` unless the record is live."""
        if conn.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone() is None:
            cls.raise_missing(conn, record_id)

    def purge_journal(self) -> None:
        """Copy the WAL into the main file (zeroing freed pages) and truncate it to nothing."""
        with self.read("checkpoint the record vault") as conn:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning(
                "record vault checkpoint incomplete (a reader holds the WAL); old pages remain for now"
            )

    def backup(self, destination: Path) -> None:
        """A consistent copy of the vault (SQLite's online backup), made while the service runs."""
        self._db.backup(destination, _BACKUP)


def backup_vault(source: Path, destination: Path) -> None:
    """Copy a vault file consistently while the server may be writing it (read-only source)."""
    if not source.exists():
        raise RecordNotFound(f"no record vault at {source}")
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        Database(source, reader, VAULT_ERRORS).backup(destination, _BACKUP)
    finally:
        reader.close()
