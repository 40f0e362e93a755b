"""Camera probes kept for review of a hit, and purged after the retention.

There is no store of "everyone ever seen": a probe from a CCTV stream is kept
only when it produced a match candidate, so an officer can confirm or dismiss
the hit; unconfirmed probes are erased once older than the retention (24 h by
default), by `purge`, which the server runs on a timer. Confirmed probes stay
as the evidence of the match. Probes are sealed like templates, in a file of
their own, so camera data never mixes with galleries.

A kept probe's id is random (63 bits from `secrets`), so ids say nothing about
how many hits there were and cannot be guessed from one another. Each probe
records the camera and the CCTV authorisation that admitted its search. A hit
is confirmed once: the first confirmation is kept (who, when), a later one is
refused (`ProbeAlreadyConfirmed`) and leaves the first untouched; every
attempt is kept in the probe's review history (`history`).

Schema version 2 (``PRAGMA user_version``) adds ``probes.authorisation_id``
and the ``probe_reviews`` table to version 1 (the file as it was before
versions, with sequential ids); `open` migrates in one transaction, copying
version 1's confirmations into the history.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from safepassage.core.errors import FailedPrecondition, NotFound
from safepassage.core.sqlite import Database, write_transaction
from safepassage.store.connections import STORE_ERRORS
from safepassage.store.errors import SchemaMismatch, StoreError, StoreUnavailable
from safepassage.store.sealing import TemplateSealer

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# Version 1's table as version 2 has it (a fresh file; a version-1 file gets _FROM_V1).
_PROBES = """
CREATE TABLE IF NOT EXISTS probes (
    probe_id INTEGER PRIMARY KEY,
    gallery_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    captured_at REAL NOT NULL,
    dimension INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    candidate TEXT NOT NULL,
    confirmed_at REAL,
    confirmed_by TEXT,
    authorisation_id TEXT NOT NULL DEFAULT ''
)"""
_FROM_V1 = ("ALTER TABLE probes ADD COLUMN authorisation_id TEXT NOT NULL DEFAULT ''",)
_NEW = (
    "CREATE INDEX IF NOT EXISTS probes_by_age ON probes (captured_at) WHERE confirmed_at IS NULL",
    """CREATE TABLE IF NOT EXISTS probe_reviews (
    probe_id INTEGER NOT NULL,
    reviewed_at REAL NOT NULL,
    reviewed_by TEXT NOT NULL,
    accepted INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS probe_reviews_by_probe ON probe_reviews (probe_id)",
)
# Version 1 kept who confirmed on the probe row only: that becomes the first entry of its history.
_HISTORY_FROM_V1 = (
    "INSERT INTO probe_reviews (probe_id, reviewed_at, reviewed_by, accepted)"
    " SELECT probe_id, confirmed_at, coalesce(confirmed_by, ''), 1 FROM probes WHERE confirmed_at IS NOT NULL"
)
# Sealing binds a row's id and a namespace, so a probe blob never opens as a template.
_NAMESPACE = "camera-probe:"
_MAX_ID = 2**63 - 1
# Random ids collide once in billions of hits; a few fresh draws settle it.
_ID_DRAWS = 8


class ProbeNotFound(StoreError, NotFound):
    """No kept probe has that id in that gallery (never kept, kept for another gallery, or purged)."""


class ProbeAlreadyConfirmed(StoreError, FailedPrecondition):
    """The hit was confirmed before; the first confirmation stands."""


def _not_kept(probe_id: int) -> ProbeNotFound:
    return ProbeNotFound(f"probe {probe_id} is not kept (never a hit, or purged after the retention)")


def _check_id(probe_id: int) -> None:
    if not 0 < probe_id <= _MAX_ID:
        raise _not_kept(probe_id)


@dataclass(frozen=True)
class KeptProbe:
    probe_id: int
    gallery_id: str
    camera_id: str
    captured_at: float
    candidate: str
    confirmed: bool
    authorisation_id: str = ""  # the CCTV authorisation that admitted the search ("" before version 2)
    confirmed_by: str = ""  # the confirming caller's label
    confirmed_at: float | None = None


@dataclass(frozen=True)
class ProbeReview:
    """One confirmation attempt: accepted (the confirmation) or refused (the hit was confirmed already)."""

    reviewed_at: float
    reviewed_by: str
    accepted: bool


_COLUMNS = (
    "probe_id, gallery_id, camera_id, captured_at, candidate, confirmed_at, confirmed_by, authorisation_id"
)


def _kept(row: Any) -> KeptProbe:
    confirmed_at = row[5]
    return KeptProbe(
        probe_id=int(row[0]),
        gallery_id=row[1],
        camera_id=row[2],
        captured_at=float(row[3]),
        candidate=row[4],
        confirmed=confirmed_at is not None,
        authorisation_id=row[7],
        confirmed_by=row[6] or "",
        confirmed_at=None if confirmed_at is None else float(confirmed_at),
    )


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Create or migrate the tables to SCHEMA_VERSION, in one transaction."""
    with write_transaction(conn):
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SchemaMismatch(f"probe store {path} has schema {found}, newer than this code")
        version_one = (
            found == 0
            and conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'probes'"
            ).fetchone()
        )
        if version_one:
            for statement in _FROM_V1:
                conn.execute(statement)
        else:
            conn.execute(_PROBES)
        for statement in _NEW:
            conn.execute(statement)
        if version_one:
            conn.execute(_HISTORY_FROM_V1)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    if version_one:
        log.info("probe store %s migrated from schema 1 to %d", path, SCHEMA_VERSION)


class ProbeStore:
    def __init__(self, database: Database, sealer: TemplateSealer) -> None:
        self._db, self._sealer = database, sealer

    @classmethod
    def open(cls, path: Path, sealer: TemplateSealer) -> ProbeStore:
        """Open (or create: 0600 in a 0700 folder) the probe file, migrated to SCHEMA_VERSION.

        One connection behind a lock: probes are kept a few times a minute, not searched.
        """
        prepare = functools.partial(_prepare, path=path)
        return cls(Database.open(path, STORE_ERRORS, prepare, action="prepare the probe store"), sealer)

    def close(self) -> None:
        self._db.close()

    def keep(
        self,
        gallery_id: str,
        camera_id: str,
        vector: npt.ArrayLike,
        candidate: str,
        captured_at: float | None = None,
        *,
        authorisation_id: str,
    ) -> int:
        """Keep a probe that produced a hit; returns its (random) id for the officer's review."""
        data = np.asarray(vector, dtype=np.float32)
        moment = time.time() if captured_at is None else captured_at
        for _ in range(_ID_DRAWS):
            probe_id = secrets.randbelow(_MAX_ID) + 1
            sealed = self._sealer.seal(data, gallery_id=_NAMESPACE + gallery_id, template_id=probe_id)
            try:
                with self._db.write("keep a probe") as conn:
                    conn.execute(
                        "INSERT INTO probes (probe_id, gallery_id, camera_id, captured_at, dimension, sealed,"
                        " candidate, authorisation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            probe_id,
                            gallery_id,
                            camera_id,
                            moment,
                            data.size,
                            sealed,
                            candidate,
                            authorisation_id,
                        ),
                    )
            except sqlite3.IntegrityError:
                continue  # the id is taken: draw another
            return probe_id
        raise StoreUnavailable(f"no free probe id after {_ID_DRAWS} random draws")  # pragma: no cover

    def confirm(self, probe_id: int, gallery_id: str, confirmed_by: str) -> KeptProbe:
        """An officer confirms the hit (once): the probe is kept beyond the retention as evidence.

        A second confirmation raises ProbeAlreadyConfirmed and changes nothing but the history.
        """
        _check_id(probe_id)
        now = time.time()
        with self._db.write("confirm a probe") as conn:
            row = conn.execute(
                "SELECT confirmed_at FROM probes WHERE probe_id = ? AND gallery_id = ?",
                (probe_id, gallery_id),
            ).fetchone()
            if row is None:
                raise _not_kept(probe_id)
            accepted = row[0] is None
            if accepted:
                conn.execute(
                    "UPDATE probes SET confirmed_at = ?, confirmed_by = ? WHERE probe_id = ?",
                    (now, confirmed_by, probe_id),
                )
            conn.execute(
                "INSERT INTO probe_reviews (probe_id, reviewed_at, reviewed_by, accepted)"
                " VALUES (?, ?, ?, ?)",
                (probe_id, now, confirmed_by, int(accepted)),
            )
        if not accepted:
            raise ProbeAlreadyConfirmed(
                f"probe {probe_id} was confirmed already; the first confirmation stands"
            )
        return self.get(probe_id, gallery_id)

    def get(self, probe_id: int, gallery_id: str | None = None) -> KeptProbe:
        """The kept probe; with `gallery_id`, only if it was kept for that gallery (else ProbeNotFound)."""
        _check_id(probe_id)
        with self._db.read("read a probe") as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
        if row is None or (gallery_id is not None and row[1] != gallery_id):
            raise _not_kept(probe_id)
        return _kept(row)

    def history(self, probe_id: int) -> list[ProbeReview]:
        """Every confirmation attempt on the probe, oldest first."""
        _check_id(probe_id)
        with self._db.read("read a probe's history") as conn:
            rows = conn.execute(
                "SELECT reviewed_at, reviewed_by, accepted FROM probe_reviews WHERE probe_id = ?"
                " ORDER BY reviewed_at, rowid",
                (probe_id,),
            ).fetchall()
        return [ProbeReview(float(at), str(by), bool(accepted)) for at, by, accepted in rows]

    def vector(self, probe_id: int) -> npt.NDArray[np.float32]:
        _check_id(probe_id)
        with self._db.read("read a probe") as conn:
            row = conn.execute(
                "SELECT gallery_id, dimension, sealed FROM probes WHERE probe_id = ?", (probe_id,)
            ).fetchone()
        if row is None:
            raise ProbeNotFound(f"probe {probe_id} is not kept")
        return self._sealer.open(
            row[2], gallery_id=_NAMESPACE + row[0], template_id=probe_id, dimension=int(row[1])
        )

    def count(self) -> int:
        return self._db.count("count probes", "SELECT count(*) FROM probes")

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Erase unconfirmed probes older than the retention; their bytes leave the file too."""
        statement = "DELETE FROM probes WHERE confirmed_at IS NULL AND captured_at < ?"
        return self._db.purge("camera probes", statement, retention_s, now)
