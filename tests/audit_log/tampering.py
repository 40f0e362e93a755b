"""What an intruder on the data host does to a log's SQLite file: cut it back, or rewrite and re-sign it."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from safepassage.audit import LogEvent, TransparencyLog, leaf_hash, load_signing_key

TABLES = ("leaves", "tree_heads", "cosignatures")


def _drop_guards(conn: sqlite3.Connection) -> None:
    """The append-only triggers stop bugs, not someone holding the file."""
    for table in TABLES:
        for verb in ("update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{verb}")


def truncate(log_path: Path, keep: int) -> None:
    """Delete entries from ``keep`` on, with every tree head and cosignature that covered them.

    What is left agrees with itself: its newest stored head still matches its entries.
    """
    conn = sqlite3.connect(log_path)
    try:
        with conn:
            _drop_guards(conn)
            conn.execute("DELETE FROM leaves WHERE leaf_index >= ?", (keep,))
            conn.execute("DELETE FROM tree_heads WHERE tree_size > ?", (keep,))
            conn.execute("DELETE FROM cosignatures WHERE tree_size > ?", (keep,))
    finally:
        conn.close()


def rewrite_and_resign(log_path: Path, key_path: Path, index: int) -> None:
    """Rewrite entry ``index`` (who searched), drop every head, re-sign with the key beside the log."""
    conn = sqlite3.connect(log_path)
    try:
        with conn:
            _drop_guards(conn)
            (data,) = conn.execute("SELECT data FROM leaves WHERE leaf_index = ?", (index,)).fetchone()
            event = LogEvent.from_leaf(bytes(data))
            leaf = dataclasses.replace(event, actor="system").to_leaf()
            conn.execute(
                "UPDATE leaves SET data = ?, leaf_hash = ? WHERE leaf_index = ?",
                (leaf, leaf_hash(leaf), index),
            )
            conn.execute("DELETE FROM tree_heads")
            conn.execute("DELETE FROM cosignatures")
    finally:
        conn.close()
    # The intruder's own tool: the log opens (no stored head contradicts it) and signs anew.
    with TransparencyLog.open(log_path, load_signing_key(key_path)) as log:
        log.sign_tree_head()
