"""The record vault's SQLite file: one connection, its lock, the WAL purge and backups.

Like the template store: WAL, synchronous=FULL, secure_delete, a private
file (0600 in a 0700 folder). One connection behind a lock: protected
enrolment is a few operations a minute, not a search path. Every part of the
vault (records, PIN attempts, credentials, referrals, erasures) shares this
one object, so each of its writes is one ``BEGIN IMMEDIATE`` transaction taken
under the same lock, and another process on the same file waits its turn.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from safepassage.core.private_files import make_private_folder
from safepassage.enrolment.errors import RecordErased, RecordNotFound
from safepassage.enrolment.vault_schema import prepare_schema
from safepassage.store.connections import open_private_file, sqlite_errors, write_transaction

__all__ = ["VaultFile", "backup_vault"]

log = logging.getLogger(__name__)


class VaultFile:
    """The open vault file. Use :meth:`open`; share it, never open the same path twice in a process."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> VaultFile:
        """Open (or create) the file and bring its schema to the current version."""
        conn = open_private_file(path, shared=True)  # `records backup` reads it while the server runs
        try:
            with sqlite_errors("open the record vault"):
                prepare_schema(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (fsynced) on exit, rolled back if anything raises."""
        with self._lock, sqlite_errors(action), write_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def read(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock: nothing writes between the statements inside."""
        with self._lock, sqlite_errors(action):
            yield self._conn

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
        make_private_folder(destination.parent)
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
        make_private_folder(destination.parent)
        target = open_private_file(destination)
        try:
            with sqlite_errors("back up the record vault"):
                reader.backup(target)
        finally:
            target.close()
    finally:
        reader.close()
