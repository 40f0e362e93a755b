"""The outbox's SQLite file: created private, or checked before use, and never written over.

An existing file is opened only when it is an outbox of this schema, of this
device's key, intact (``integrity_check`` and the page count against the file
size, which catches a torn last page): anything else is `OutboxCorrupt` and
the file is left as it was, since it may hold queries not yet delivered.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.errors import DeviceKeyError, OutboxCorrupt, OutboxUnusable
from safepassage.core.sqlite import SqliteErrors, prepare_private_file, write_transaction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x53504F42  # "SPOB" in the file header: tells an outbox from any other SQLite file
_SQLITE_MAGIC = b"SQLite format 3\x00"
COUNTERS = ("total_enqueued", "dropped_when_full", "refused_when_full", "evicted", "duplicate_answers")
_TABLES = frozenset({"meta", "counters", "entries", "sqlite_sequence"})
_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    # seq: queue order, never reused. request: sealed, NULL once answered. response: sealed.
    """CREATE TABLE entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, query_id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
        track_id INTEGER NOT NULL, frame_time REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'answered', 'failed', 'quarantined')),
        attempts INTEGER NOT NULL DEFAULT 0, is_hit INTEGER NOT NULL DEFAULT 0 CHECK (is_hit IN (0, 1)),
        answered_at REAL, request BLOB, response BLOB)""",
    "CREATE INDEX entries_by_state ON entries (state, is_hit, seq)",
)


def prepare_file(path: Path) -> bool:
    """Create the file owner-only if missing; refuse a non-SQLite one. Returns True if it is empty."""
    try:
        prepare_private_file(path)
        info = path.stat()
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
        wal = Path(f"{path}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
    except OSError as exc:
        raise OutboxUnusable(f"cannot open the outbox file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutboxCorrupt(f"the outbox path {path} is not a regular file")
    # A crash before the first schema commit leaves an empty file; an empty one with a WAL is not that.
    empty = info.st_size == 0 and wal_size == 0
    if not empty and (head != _SQLITE_MAGIC or info.st_size < 100):
        raise OutboxCorrupt(f"the outbox file {path} is not an SQLite database; left untouched")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o600)  # the -wal and -shm files SQLite creates take this mode too
        log.warning("tightened permissions of %s from %o to 600", path, stat.S_IMODE(info.st_mode))
    return empty


def initialise(conn: sqlite3.Connection, key: DeviceKey, path: Path) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    with write_transaction(conn):
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:  # else another process won
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("INSERT INTO meta VALUES ('key_fingerprint', ?)", (key.fingerprint,))
            conn.executemany("INSERT INTO counters VALUES (?, 0)", [(name,) for name in COUNTERS])
            log.info("created outbox %s (schema %d)", path, SCHEMA_VERSION)
    check_existing(conn, key, path)


def check_existing(conn: sqlite3.Connection, key: DeviceKey, path: Path) -> bool:
    """Check a file without writing to it: ids, version, tables, integrity, key.

    Returns True for a blank SQLite file (no tables, no ids: creation interrupted
    before the schema commit), which is safe to initialise.
    """
    conn.execute("PRAGMA query_only=ON")  # nothing may change a file not yet known to be an outbox
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id == 0 and version == 0 and not conn.execute("SELECT 1 FROM sqlite_master").fetchone():
            return True
        if app_id != APPLICATION_ID:
            raise OutboxCorrupt(f"{path} is an SQLite database but not an outbox; left untouched")
        if version != SCHEMA_VERSION:
            raise OutboxCorrupt(
                f"outbox {path} has schema version {version}, this code reads {SCHEMA_VERSION}"
            )
        if tables != _TABLES:
            raise OutboxCorrupt(f"outbox {path} has tables {sorted(tables)}, expected {sorted(_TABLES)}")
        check_size(conn, path)
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise OutboxCorrupt(f"outbox {path} failed its integrity check: {'; '.join(problems)}")
        row = conn.execute("SELECT value FROM meta WHERE name = 'key_fingerprint'").fetchone()
        if row is None:
            raise OutboxCorrupt(f"outbox {path} records no device key fingerprint")
        if bytes(row[0]) != key.fingerprint:
            raise DeviceKeyError(
                f"outbox {path} belongs to device key {bytes(row[0]).hex()}, not {key.fingerprint.hex()}"
            )
    except sqlite3.DatabaseError as exc:
        raise OutboxCorrupt(f"the outbox file {path} cannot be read ({exc}); left untouched") from None
    finally:
        conn.execute("PRAGMA query_only=OFF")
    return False


def check_size(conn: sqlite3.Connection, path: Path) -> None:
    """Catch a truncated file, which integrity_check misses when only page contents are lost."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    size = path.stat().st_size
    wal = Path(f"{path}-wal")
    # Pages may live only in a WAL not yet checkpointed; without one, the file must hold them all.
    if size % page_size or (size < pages * page_size and not (wal.exists() and wal.stat().st_size)):
        raise OutboxCorrupt(f"outbox {path} is truncated: {size} bytes for {pages} pages of {page_size}")


# ``with sqlite_errors("action"):`` corruption -> OutboxCorrupt; every other SQLite error (busy, I/O,
# disk full, and the rest) -> OutboxUnusable.
sqlite_errors = SqliteErrors(unavailable=OutboxUnusable, corrupt=OutboxCorrupt, other=OutboxUnusable).during
