"""Row ids allocated before their insert, because a row's seal binds its id.

Safe because the caller holds the write transaction; inserting the ids explicitly advances
``sqlite_sequence`` exactly as implicit AUTOINCREMENT ids would, so an id is never reused, not
even the highest one after it was deleted.
"""

from __future__ import annotations

import sqlite3

__all__ = ["allocate_ids"]

# Table and key column names are fixed by the schema, never taken from a caller's input.
_KEYS = {"templates": "template_id", "captures": "capture_id"}


def allocate_ids(conn: sqlite3.Connection, table: str, count: int) -> list[int]:
    """The next ``count`` AUTOINCREMENT ids of ``table`` (``templates`` or ``captures``)."""
    key = _KEYS[table]
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    highest = conn.execute(f"SELECT coalesce(max({key}), 0) FROM {table}").fetchone()
    first = max(int(row[0]) if row else 0, int(highest[0])) + 1
    return list(range(first, first + count))
