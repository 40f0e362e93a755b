"""Camera probes kept for review of a hit, and purged after the retention.

There is no store of "everyone ever seen": a probe from a CCTV stream is kept
only when it produced a match candidate, so an officer can confirm or dismiss
the hit; unconfirmed probes are erased once older than the retention (24 h by
default), by `purge`, which the server runs on a timer. Confirmed probes stay
as the evidence of the match. Probes are sealed like templates, in a file of
their own, so camera data never mixes with galleries.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage_core.errors import NotFound
from store.connections import open_private_file, sqlite_errors, write_transaction
from store.errors import StoreError
from store.sealing import TemplateSealer

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    probe_id INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    captured_at REAL NOT NULL,
    dimension INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    candidate TEXT NOT NULL,
    confirmed_at REAL,
    confirmed_by TEXT
);
CREATE INDEX IF NOT EXISTS probes_by_age ON probes (captured_at) WHERE confirmed_at IS NULL;
"""
# Sealing binds a row's id and a namespace, so a probe blob never opens as a template.
_NAMESPACE = "camera-probe:"


class ProbeNotFound(StoreError, NotFound):
    """No kept probe has that id (never kept, or already purged)."""


_MAX_ID = 2**63 - 1


def _not_kept(probe_id: int) -> ProbeNotFound:
    return ProbeNotFound(f"probe {probe_id} is not kept (never a hit, or purged after the retention)")


@dataclass(frozen=True)
class KeptProbe:
    probe_id: int
    gallery_id: str
    camera_id: str
    captured_at: float
    candidate: str
    confirmed: bool


class ProbeStore:
    def __init__(self, path: Path, sealer: TemplateSealer, conn: sqlite3.Connection) -> None:
        self._path = path
        self._sealer = sealer
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, sealer: TemplateSealer) -> ProbeStore:
        conn = open_private_file(path)
        with sqlite_errors("prepare the probe store"):
            conn.executescript(_SCHEMA)
        return cls(path, sealer, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def keep(
        self,
        gallery_id: str,
        camera_id: str,
        vector: npt.ArrayLike,
        candidate: str,
        captured_at: float | None = None,
    ) -> int:
        """Keep a probe that produced a hit; returns its id for the officer's review."""
        data = np.asarray(vector, dtype=np.float32)
        moment = time.time() if captured_at is None else captured_at
        with self._lock, sqlite_errors("keep a probe"), write_transaction(self._conn) as conn:
            cursor = conn.execute(
                "INSERT INTO probes (gallery_id, camera_id, captured_at, dimension, sealed, candidate)"
                " VALUES (?, ?, ?, ?, x'', ?)",
                (gallery_id, camera_id, moment, data.size, candidate),
            )
            probe_id = int(cursor.lastrowid or 0)
            sealed = self._sealer.seal(data, gallery_id=_NAMESPACE + gallery_id, template_id=probe_id)
            conn.execute("UPDATE probes SET sealed = ? WHERE probe_id = ?", (sealed, probe_id))
        return probe_id

    def confirm(self, probe_id: int, confirmed_by: str) -> KeptProbe:
        """An officer confirms the hit: the probe is kept beyond the retention as evidence."""
        if not 0 < probe_id <= _MAX_ID:
            raise _not_kept(probe_id)
        with self._lock, sqlite_errors("confirm a probe"):
            updated = self._conn.execute(
                "UPDATE probes SET confirmed_at = ?, confirmed_by = ? WHERE probe_id = ?",
                (time.time(), confirmed_by, probe_id),
            ).rowcount
        if not updated:
            raise _not_kept(probe_id)
        return self.get(probe_id)

    def get(self, probe_id: int) -> KeptProbe:
        if not 0 < probe_id <= _MAX_ID:
            raise _not_kept(probe_id)
        with self._lock, sqlite_errors("read a probe"):
            row = self._conn.execute(
                "SELECT probe_id, gallery_id, camera_id, captured_at, candidate, confirmed_at IS NOT NULL"
                " FROM probes WHERE probe_id = ?",
                (probe_id,),
            ).fetchone()
        if row is None:
            raise _not_kept(probe_id)
        return KeptProbe(int(row[0]), row[1], row[2], float(row[3]), row[4], bool(row[5]))

    def vector(self, probe_id: int) -> npt.NDArray[np.float32]:
        if not 0 < probe_id <= _MAX_ID:
            raise _not_kept(probe_id)
        with self._lock, sqlite_errors("read a probe"):
            row = self._conn.execute(
                "SELECT gallery_id, dimension, sealed FROM probes WHERE probe_id = ?", (probe_id,)
            ).fetchone()
        if row is None:
            raise ProbeNotFound(f"probe {probe_id} is not kept")
        return self._sealer.open(
            row[2], gallery_id=_NAMESPACE + row[0], template_id=probe_id, dimension=int(row[1])
        )

    def count(self) -> int:
        with self._lock, sqlite_errors("count probes"):
            return int(self._conn.execute("SELECT count(*) FROM probes").fetchone()[0])

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Erase unconfirmed probes older than the retention; their bytes leave the file too."""
        cutoff = (time.time() if now is None else now) - retention_s
        with self._lock, sqlite_errors("purge probes"):
            erased = self._conn.execute(
                "DELETE FROM probes WHERE confirmed_at IS NULL AND captured_at < ?", (cutoff,)
            ).rowcount
            if erased:
                # secure_delete zeroes the pages; the checkpoint moves that into the main
                # file and truncates the WAL, which still held the old frames.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if erased:
            log.info("purged %d camera probes older than the retention", erased)
        return erased
