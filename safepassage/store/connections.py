"""The template store's SQLite connections: one writer, a pool of readers, and its error classes.

Files, connection settings, transactions and the mapping of SQLite's errors are the core recipe
(:mod:`safepassage.core.sqlite`); the store names its errors (StoreUnavailable, StoreCorrupted)
and keeps its file private to this process (the ``unix-excl`` VFS described there).

Threading (:class:`Connections`): one writer connection behind a lock
serialises every write, each a ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction
(so other processes are serialised too); reads take a connection from a pool
and run concurrently with each other and with the writer. The alternative, one
connection behind one lock, would make a 1M-template index rebuild block every
other request for its whole duration.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safepassage.core.sqlite import (
    SqliteErrors,
    open_connection,
    prepare_private_file,
    read_transaction,
    write_transaction,
)
from safepassage.store.errors import StoreClosed, StoreCorrupted, StoreUnavailable
from safepassage.store.schema import apply_schema

__all__ = [
    "STORE_ERRORS",
    "ConnectionPool",
    "Connections",
    "sqlite_errors",
    "write_transaction",
]

_log = logging.getLogger(__name__)

STORE_ERRORS = SqliteErrors(unavailable=StoreUnavailable, corrupt=StoreCorrupted)
# ``with sqlite_errors("action"):`` busy/IO -> StoreUnavailable, corruption -> StoreCorrupted, others pass.
sqlite_errors = STORE_ERRORS.during


class ConnectionPool:
    """Reader connections handed to one thread at a time and reused.

    Grows to the number of concurrent readers; keeps at most ``max_idle`` open
    between uses. After ``close`` no connection is handed out and those in use
    are closed when returned.
    """

    def __init__(self, factory: Callable[[], sqlite3.Connection], *, max_idle: int = 8) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreClosed("the template store is closed")
            if self._idle:
                return self._idle.pop()
        return self._factory()

    def _release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                _log.warning("discarding a reader connection that failed to roll back")
                conn.close()
                return
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Connections:
    """The store file's writer (serialised by a lock) and its pool of readers."""

    def __init__(self, path: Path, writer: sqlite3.Connection, busy_timeout: float) -> None:
        """Use :meth:`open`."""
        self.path = path
        self._writer = writer
        self._busy_ms = int(busy_timeout * 1000)
        self._write_lock = threading.Lock()
        self._closed = False
        self._readers = ConnectionPool(
            lambda: open_connection(path, STORE_ERRORS, read_only=True, busy_timeout=busy_timeout)
        )

    @classmethod
    def open(cls, path: Path, fingerprint: bytes, busy_timeout: float) -> tuple[Connections, int]:
        """Create or open the file (mode 0600), apply the schema; returns the old schema version."""
        try:
            prepare_private_file(path, tighten=True)  # the data folder and its missing parents: 0700
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the store file {path}: {exc.strerror}") from exc
        writer = open_connection(path, STORE_ERRORS, read_only=False, busy_timeout=busy_timeout)
        try:
            with sqlite_errors("prepare the schema"):
                before = apply_schema(writer, fingerprint)
        except BaseException:
            writer.close()
            raise
        return cls(path, writer, busy_timeout), before

    def close(self) -> bool:
        """Close every connection; returns False if already closed."""
        with self._write_lock:
            if self._closed:
                return False
            self._closed = True
            self._readers.close()
            self._writer.close()
            return True

    def check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the template store is closed")

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction, committed (and fsynced) before it exits."""
        with self._write_lock:
            self.check_open()
            with sqlite_errors(action), write_transaction(self._writer) as conn:
                yield conn

    @contextmanager
    def read(self, action: str) -> Iterator[sqlite3.Connection]:
        """A pooled reader inside one read transaction, i.e. one snapshot."""
        self.check_open()
        with self._readers.connection() as pooled, sqlite_errors(action), read_transaction(pooled) as conn:
            yield conn

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it, without waiting for readers.

        Returns False if a reader's snapshot kept frames in the WAL; they are
        overwritten by later writes.
        """
        with self._write_lock:
            self.check_open()
            with sqlite_errors("checkpoint the WAL"):
                self._writer.execute("PRAGMA busy_timeout=0")
                try:
                    busy = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    self._writer.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        if busy:
            _log.debug("WAL checkpoint of %s deferred: readers active", self.path)
        return not busy
