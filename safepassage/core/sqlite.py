"""Durable SQLite: private files, configured connections, transactions, and errors in the core categories.

Every SQLite file of the package (template store, kept probes, reply ledger, record vault,
transparency log, edge outbox) is opened, written and mapped to errors through here; what each
keeps apart is its schema and its error classes (:class:`SqliteErrors`).

Connections run in autocommit mode (``isolation_level=None``) so the owner issues BEGIN/COMMIT
itself and a transaction never starts or ends behind its back; every write is
:func:`write_transaction` (``BEGIN IMMEDIATE``: the write lock is taken up front, so two writers,
threads or processes, never both read a state they then both change). :func:`open_connection`'s
settings:

* ``synchronous=FULL``: a commit is fsynced before it returns, so an acknowledged write survives
  power loss as well as ``kill -9``.
* ``secure_delete=ON``: deleted rows are overwritten with zeros.
* ``foreign_keys=ON``; ``trusted_schema=OFF``: a tampered file cannot run SQL functions from its schema.
* readers add ``query_only=ON`` so a bug cannot write outside the write lock.
* ``journal_mode=WAL``, a property of the file set by the writer: readers never block the writer.

The WAL index: SQLite's default keeps it in a ``-shm`` file that every connection memory-maps. A
mapped page the filesystem cannot provide (a failing or full disk, a file truncated behind the
process's back) kills the process with SIGBUS, nothing logged; and on a full disk the ``-shm``
file cannot be made, so not even a read-only start works. Files no other process opens are
therefore opened through SQLite's ``unix-excl`` VFS (``private``): the WAL index lives in this
process's heap, nothing is mapped, a full disk fails writes with SQLITE_FULL while reads go on,
and another process cannot open the file at all. Files other processes read meanwhile (the record
vault, for ``records backup``; the transparency log) are opened ``shared``: the default VFS,
falling back to the private WAL index when the ``-shm`` file cannot be made.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from safepassage.core.errors import DataIntegrityError, SafePassageError, Unavailable
from safepassage.core.private_files import PRIVATE_FILE_MODE, make_private_folder

__all__ = [
    "IN_LIST_MAX",
    "PAGE_SIZE",
    "Database",
    "SqliteErrors",
    "classify",
    "connect",
    "connect_shared",
    "in_chunks",
    "open_connection",
    "open_private_file",
    "prepare_private_file",
    "read_transaction",
    "write_transaction",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

# A sealed d=512 template is 2085 bytes: a default 4 KiB page holds one and
# wastes half; 16 KiB pages hold seven (measured: 414 MB -> 237 MB per 100k).
PAGE_SIZE = 16384

# Values bound in one `IN (?, ...)` list: well under SQLite's variable limit (32766 since 3.32; 999
# before), and small enough that a list's statement is prepared quickly.
IN_LIST_MAX = 500


def in_chunks(values: Sequence[T]) -> Iterator[tuple[str, Sequence[T]]]:
    """``values`` in slices of at most IN_LIST_MAX, each with its ``?, ?, ...`` placeholders."""
    for start in range(0, len(values), IN_LIST_MAX):
        chunk = values[start : start + IN_LIST_MAX]
        yield ",".join("?" * len(chunk)), chunk


# Bounds the WAL file left behind after a checkpoint; it is rewritten, not grown.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# SQLite's VFS that keeps the WAL index in process memory and locks the file to this process.
_PRIVATE_VFS = "unix-excl"

_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
    }
)
_CORRUPT = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def classify(error: sqlite3.DatabaseError) -> type[SafePassageError] | None:
    """The core category of an SQLite error: Unavailable (busy, I/O, full: retry later),
    DataIntegrityError (a damaged file), or None (a bug, or a constraint the caller expects)."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in _UNAVAILABLE:
        return Unavailable
    if code in _CORRUPT:
        return DataIntegrityError
    return None


@dataclass(frozen=True)
class SqliteErrors:
    """One owner's error classes for SQLite's failures, by category.

    ``other``: what every other DatabaseError becomes (None: it passes through unchanged, e.g. an
    IntegrityError the caller translates).
    """

    unavailable: type[SafePassageError]
    corrupt: type[SafePassageError]
    other: type[SafePassageError] | None = None

    @contextmanager
    def during(self, action: str) -> Iterator[None]:
        """Map the errors raised inside to this owner's classes, the message saying ``cannot {action}``."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            category = classify(exc)
            mapped = (
                self.unavailable
                if category is Unavailable
                else self.corrupt
                if category is DataIntegrityError
                else self.other
            )
            if mapped is None:
                raise
            raise mapped(f"cannot {action}: {exc}") from exc


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if anything raises (errors mapped by the caller)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: every SELECT inside sees the same snapshot."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def prepare_private_file(path: Path, *, tighten: bool = False) -> None:
    """Create the file owner-only (in a 0700 folder) before SQLite opens it; its WAL and SHM take its mode.

    ``tighten``: an existing file (or WAL, SHM) that group or others may access is made 0600, with a warning.
    """
    make_private_folder(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE))
    for suffix in ("", "-wal", "-shm") if tighten else ():
        candidate = Path(f"{path}{suffix}")
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(candidate, PRIVATE_FILE_MODE)
            _log.warning("tightened permissions of %s from %o to 600", candidate, mode)


def connect(path: Path, busy_timeout: float, *, private: bool) -> sqlite3.Connection:
    """A bare autocommit connection; ``private``: through the unix-excl VFS (see the module notes)."""
    quoted = urllib.parse.quote(os.fspath(path.absolute()))
    uri = f"file:{quoted}?vfs={_PRIVATE_VFS}" if private and sys.platform != "win32" else f"file:{quoted}"
    # Connections move between threads (pool, generator finalisers) but
    # are only ever used by one thread at a time.
    return sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False)


def connect_shared(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A bare connection to a WAL file other processes open too.

    The shared WAL index is a ``-shm`` file; where it cannot be made or grown
    (a full disk, a read-only folder) the connection falls back to a private
    one, so the owner still starts and reads. Other processes cannot open the
    file meanwhile.
    """
    conn = connect(path, busy_timeout, private=False)
    try:
        # The first read maps the WAL index: fail here, not in the first request.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as error:
        conn.close()
        if classify(error) is not Unavailable:
            raise
        _log.warning("opening %s with a WAL index private to this process: %s", path, error)
    return connect(path, busy_timeout, private=True)


def open_connection(
    path: Path, errors: SqliteErrors, *, read_only: bool, busy_timeout: float, shared: bool = False
) -> sqlite3.Connection:
    """Open and configure one connection (private to this process unless ``shared``; see the module notes)."""
    with errors.during("open the database"):
        conn = connect_shared(path, busy_timeout) if shared else connect(path, busy_timeout, private=True)
        try:
            if not read_only:
                # Only takes effect while the file is empty, so before WAL is enabled.
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise errors.unavailable(f"cannot enable WAL journal (got {mode!r})")
                conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA trusted_schema=OFF")
            if read_only:
                conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise
    return conn


def open_private_file(path: Path, errors: SqliteErrors, *, shared: bool = False) -> sqlite3.Connection:
    """A read-write connection to a database only this user may read (folder 0700, file 0600)."""
    try:
        prepare_private_file(path)
    except OSError as exc:
        raise errors.unavailable(f"cannot create the database file {path}: {exc.strerror}") from exc
    return open_connection(path, errors, read_only=False, busy_timeout=5.0, shared=shared)


class Database:
    """One file on one connection behind a lock: for files written a few times a minute, not a search path.

    Every write is one ``BEGIN IMMEDIATE`` transaction taken under the lock, so another process on
    the same file waits its turn. Use :meth:`open`.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, errors: SqliteErrors) -> None:
        self.path, self.errors = path, errors
        self._conn, self._lock = conn, threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path,
        errors: SqliteErrors,
        prepare: Callable[[sqlite3.Connection], object],
        *,
        action: str,
        shared: bool = False,
    ) -> Database:
        """Create (0600, folder 0700) or open the file, then ``prepare`` its schema (``action`` names it)."""
        conn = open_private_file(path, errors, shared=shared)
        try:
            with errors.during(action):
                prepare(conn)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, errors)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (fsynced) on exit, rolled back if anything raises."""
        with self._lock, self.errors.during(action), write_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def read(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock: nothing writes between the statements inside."""
        with self._lock, self.errors.during(action):
            yield self._conn

    def count(self, action: str, statement: str) -> int:
        """The integer one ``SELECT count(*) ...`` answers."""
        with self.read(action) as conn:
            return int(conn.execute(statement).fetchone()[0])

    def purge(self, what: str, statement: str, retention_s: float, now: float | None = None) -> int:
        """Erase (:meth:`erase`) the rows ``statement`` selects by a cutoff: ``now`` less the retention."""
        cutoff = (time.time() if now is None else now) - retention_s
        erased = self.erase(f"purge {what}", statement, (cutoff,))
        if erased:
            _log.info("purged %d %s older than the retention from %s", erased, what, self.path.name)
        return erased

    def erase(self, action: str, statement: str, parameters: tuple[object, ...]) -> int:
        """Run a DELETE and return how many rows went; their bytes leave the file and the WAL too.

        ``secure_delete`` zeroes the pages; the checkpoint moves that into the main file and
        truncates the WAL, which still held the old frames.
        """
        with self.read(action) as conn:
            erased = int(conn.execute(statement, parameters).rowcount)
            if erased:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return erased

    def backup(self, target: Path, action: str) -> None:
        """A consistent copy of the file into a new private file (SQLite's online backup)."""
        copy = Database.open(target, self.errors, lambda conn: None, action=action)
        try:
            with self.read(action) as conn:
                conn.backup(copy._conn)
        finally:
            copy.close()
