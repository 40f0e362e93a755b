"""The log's SQLite file: schema, connection settings, transactions and error mapping.

The log has its own file, apart from the template store, so that exporting
or copying it never touches biometric data and its append rate never
contends with enrolment writes. Files, transactions and error mapping are the core
recipe (:mod:`safepassage.core.sqlite`); the settings:

* ``journal_mode=WAL``: readers (an export) never block an append.
* ``synchronous=FULL``: an append returns after its COMMIT is fsynced, so an
  acknowledged event survives power loss.
* ``trusted_schema=OFF``: a tampered file cannot run SQL functions from its schema.
* Autocommit mode (``isolation_level=None``): transactions are explicit, and
  every write is ``BEGIN IMMEDIATE`` so the next leaf index is read while
  holding SQLite's write lock, which serialises appends across processes.

Triggers refuse UPDATE and DELETE on every table but ``meta``. Anyone with the file can
drop them; they are there to stop bugs, while tampering is what the Merkle
tree and the signed tree heads expose.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safepassage.audit.errors import LogCorrupted, LogSchemaMismatch, LogUnavailable
from safepassage.core.sqlite import (
    SqliteErrors,
    connect_shared,
    prepare_private_file,
    read_transaction,
    write_transaction,
)

__all__ = ["SCHEMA_VERSION", "blob", "connect", "read", "sqlite_errors", "write"]

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leaves ("
    " leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),"
    " data BLOB NOT NULL,"
    " leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32))",
    "CREATE TABLE IF NOT EXISTS tree_heads ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " version INTEGER NOT NULL,"
    " tree_size INTEGER NOT NULL CHECK (tree_size >= 0),"
    " timestamp INTEGER NOT NULL,"
    " root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),"
    " signature BLOB NOT NULL)",
    # Witnesses' cosignatures of published tree heads (safepassage.audit.cosignature), as JSON lines.
    "CREATE TABLE IF NOT EXISTS cosignatures ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tree_size INTEGER NOT NULL CHECK (tree_size >= 0),"
    " witness_key_id TEXT NOT NULL,"
    " body TEXT NOT NULL)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_append_only_{verb.lower()} BEFORE {verb} ON {table}"
        " BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END"
        for table in ("leaves", "tree_heads", "cosignatures")
        for verb in ("UPDATE", "DELETE")
    ),
)


# ``with sqlite_errors("action"):`` busy/IO -> LogUnavailable, corruption -> LogCorrupted, others pass.
sqlite_errors = SqliteErrors(unavailable=LogUnavailable, corrupt=LogCorrupted).during


def connect(path: Path, *, read_only: bool = False, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open the log file; the writer also creates it and its schema."""
    path = Path(path)
    with sqlite_errors("open the transparency log"):
        if read_only:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None
            )
        else:
            prepare_private_file(path)  # missing parents 0700 too, whatever the umask
            # Falls back to a private WAL index where the -shm file cannot be made (a full disk).
            conn = connect_shared(path, busy_timeout)
        try:
            if not read_only:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogUnavailable(f"cannot enable WAL journal (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA trusted_schema=OFF")
            if read_only:
                conn.execute("PRAGMA query_only=ON")
            else:
                with write(conn, "create the schema"):
                    _apply_schema(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def _apply_schema(conn: sqlite3.Connection) -> None:
    # Not executescript(): it would COMMIT the open transaction first.
    for statement in _SCHEMA:
        conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        raise LogSchemaMismatch(f"the log's schema version {int(row[0])} is newer than this code's")


def blob(value: object, what: str) -> bytes:
    """A BLOB column's value; LogCorrupted if someone stored another type there."""
    if not isinstance(value, bytes):
        raise LogCorrupted(f"{what} is stored as {type(value).__name__}, not as bytes")
    return value


@contextmanager
def write(conn: sqlite3.Connection, action: str) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction; rolled back if anything raises."""
    with sqlite_errors(action), write_transaction(conn):
        yield conn


@contextmanager
def read(conn: sqlite3.Connection, action: str) -> Iterator[sqlite3.Connection]:
    """One read transaction: every SELECT inside sees the same snapshot."""
    with sqlite_errors(action), read_transaction(conn):
        yield conn
