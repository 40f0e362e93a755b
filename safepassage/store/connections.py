"""SQLite connections: how each is configured, pooled, and how its errors are mapped.

Every connection runs in autocommit mode (``isolation_level=None``) so the
store issues BEGIN/COMMIT itself and a transaction never starts or ends
behind its back. Per-connection pragmas:

* ``synchronous=FULL``: a commit is fsynced before it returns, so an
  acknowledged write survives power loss as well as ``kill -9``.
* ``secure_delete=ON``: deleted rows are overwritten with zeros.
* ``foreign_keys=ON``: deleting a gallery cascades to its templates.
* ``trusted_schema=OFF``: a tampered file cannot run SQL functions from its schema.
* readers add ``query_only=ON`` so a bug cannot write outside the write lock.

``journal_mode=WAL`` is a property of the file, set once by the writer: readers
then never block the writer and see a consistent snapshot per transaction.

The WAL index: SQLite's default keeps it in a ``-shm`` file that every
connection memory-maps. A mapped page the filesystem cannot provide (a failing
or full disk, a file truncated behind the server's back) kills the process
with SIGBUS, nothing logged; and on a full disk the ``-shm`` file cannot be
made, so not even a read-only start works. The server's own files are
therefore opened through SQLite's ``unix-excl`` VFS: the WAL index lives in
this process's heap (shared by its connections), nothing is mapped, a full
disk fails writes with SQLITE_FULL (-> StoreUnavailable) while reads go on,
and another process cannot open the file at all (a second line behind the
data-folder lock). Files other processes read while the server runs (the
record vault, for ``records backup``) are opened ``shared``: the default VFS,
falling back to the private WAL index when the ``-shm`` file cannot be made.

Threading (:class:`Connections`): one writer connection behind a lock
serialises every write, each a ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction
(so other processes are serialised too); reads take a connection from a pool
and run concurrently with each other and with the writer. The alternative, one
connection behind one lock, would make a 1M-template index rebuild block every
other request for its whole duration.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safepassage.core.private_files import make_private_folder
from safepassage.store.errors import StoreClosed, StoreCorrupted, StoreError, StoreUnavailable
from safepassage.store.schema import apply_schema

__all__ = [
    "ConnectionPool",
    "Connections",
    "connect_shared",
    "failure_kind",
    "open_connection",
    "read_transaction",
    "sqlite_errors",
    "write_transaction",
]

_log = logging.getLogger(__name__)

# A sealed d=512 template is 2085 bytes: a default 4 KiB page holds one and
# wastes half; 16 KiB pages hold seven (measured: 414 MB -> 237 MB per 100k).
PAGE_SIZE = 16384

# Bounds the WAL file left behind after a checkpoint; it is rewritten, not grown.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

_RETRYABLE = frozenset(
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


def failure_kind(error: sqlite3.DatabaseError) -> str | None:
    """Classify an error: "unavailable" (busy, I/O: retry), "corrupt" (a damaged file), else None.

    Shared by every SQLite file of the server (store, probes, transparency log).
    """
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in _RETRYABLE:
        return "unavailable"
    if code in _CORRUPT:
        return "corrupt"
    return None


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if anything raises.

    IMMEDIATE takes the write lock up front, so two writers (threads or
    processes) never both read a state they then both change. Callers wrap it
    in their own error mapping (`sqlite_errors`).
    """
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


def open_private_file(path: Path, *, shared: bool = False) -> sqlite3.Connection:
    """A read-write connection to a database only this user may read (folder 0700, file 0600).

    ``shared``: other processes may open the file meanwhile (see the module's notes).
    """
    try:
        make_private_folder(path.parent)
        path.touch(mode=0o600, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the database file {path}: {exc.strerror}") from exc
    return open_connection(path, read_only=False, busy_timeout=5.0, shared=shared)


# SQLite's VFS that keeps the WAL index in process memory and locks the file to this process.
_PRIVATE_VFS = "unix-excl"


def _connect(path: Path, busy_timeout: float, *, private: bool) -> sqlite3.Connection:
    """A bare autocommit connection; ``private``: through the unix-excl VFS (see the module notes)."""
    quoted = urllib.parse.quote(os.fspath(path.absolute()))
    uri = f"file:{quoted}?vfs={_PRIVATE_VFS}" if private and sys.platform != "win32" else f"file:{quoted}"
    # Connections move between threads (pool, generator finalisers) but
    # are only ever used by one thread at a time.
    return sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False)


def connect_shared(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A bare connection to a WAL file other processes open too (the record vault, the transparency log).

    The shared WAL index is a ``-shm`` file; where it cannot be made or grown
    (a full disk, a read-only folder) the connection falls back to a private
    one, so the server still starts and reads. Other processes cannot open the
    file meanwhile.
    """
    conn = _connect(path, busy_timeout, private=False)
    try:
        # The first read maps the WAL index: fail here, not in the first request.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as error:
        conn.close()
        if failure_kind(error) != "unavailable":
            raise
        _log.warning("opening %s with a WAL index private to this process: %s", path, error)
    return _connect(path, busy_timeout, private=True)


def open_connection(
    path: Path, *, read_only: bool, busy_timeout: float, shared: bool = False
) -> sqlite3.Connection:
    """Open and configure one connection to the store file (private to this process unless ``shared``)."""
    with sqlite_errors("open the database"):
        conn = connect_shared(path, busy_timeout) if shared else _connect(path, busy_timeout, private=True)
        try:
            if not read_only:
                # Only takes effect while the file is empty, so before WAL is enabled.
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(f"cannot enable WAL journal (got {mode!r})")
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


@contextmanager
def sqlite_errors(action: str) -> Iterator[None]:
    """Map SQLite's busy/IO and corruption errors to store errors; others pass through."""
    try:
        yield
    except StoreError:
        raise
    except sqlite3.IntegrityError:
        raise  # callers translate the constraint they expect
    except sqlite3.DatabaseError as exc:
        kind = failure_kind(exc)
        if kind == "unavailable":
            raise StoreUnavailable(f"cannot {action}: {exc}") from exc
        if kind == "corrupt":
            raise StoreCorrupted(f"cannot {action}: {exc}") from exc
        raise


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


def _prepare_file(path: Path) -> None:
    """Create the file owner-only before SQLite opens it; WAL and SHM files inherit its mode."""
    make_private_folder(path.parent)  # the data folder and its missing parents: 0700
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600))
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(candidate, 0o600)
            _log.warning("tightened permissions of %s from %o to 600", candidate, mode)


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
            lambda: open_connection(path, read_only=True, busy_timeout=busy_timeout)
        )

    @classmethod
    def open(cls, path: Path, fingerprint: bytes, busy_timeout: float) -> tuple[Connections, int]:
        """Create or open the file (mode 0600), apply the schema; returns the old schema version."""
        try:
            _prepare_file(path)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the store file {path}: {exc.strerror}") from exc
        writer = open_connection(path, read_only=False, busy_timeout=busy_timeout)
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
