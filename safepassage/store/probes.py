"""Camera probes kept for review of a hit, and purged after the retention.

There is no store of "everyone ever seen": a probe from a CCTV stream is kept
only when it produced a match candidate, so reviewers can confirm or dismiss
the hit; unconfirmed probes are erased once older than the retention (24 h by
default), by `purge`, which the server runs on a timer. Confirmed probes stay
as the evidence of the match. Probes are sealed like templates, in a file of
their own, so camera data never mixes with galleries.

A kept probe's id is random (63 bits from `secrets`), so ids say nothing about
how many hits there were and cannot be guessed from one another. Each probe
records the camera, the CCTV authorisation that admitted its search (its id,
legal basis and expiry), the candidate, its score and the threshold in force,
and the small face crop the camera sent with it if it sent one (sealed, in the
probe's row: erased with it, by the retention or a dismissal).

Review takes four eyes: the first confirmation records a pending review; a
second, DIFFERENT reviewer completes it (the probe is then kept as evidence).
The same reviewer acting twice is refused (`SameReviewer`); a dismissal by any
reviewer erases the probe at once (its bytes leave the file and the WAL, as
the retention's purge does), leaving only who dismissed it, when, and in
which gallery; a confirmed or dismissed hit cannot be acted on again
(`ProbeAlreadyConfirmed`, `ProbeDismissed`), so nobody overwrites another's
decision. Every attempt, refused or not, is kept in the review history
(`history`): who, when, confirm or dismiss, accepted or refused.

Schema version 2 (``PRAGMA user_version``) adds ``probes.authorisation_id``
and the ``probe_reviews`` table to version 1 (the file as it was before
versions, with sequential ids); version 3 adds the score, the threshold and
the authorisation's legal basis and expiry and the face crop to ``probes``, the action to
``probe_reviews``, and the ``dismissed_probes`` table. `open` migrates in one
transaction, copying version 1's confirmations into the history.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from safepassage.core.sqlite import Database, write_transaction
from safepassage.store.connections import STORE_ERRORS
from safepassage.store.errors import SchemaMismatch, StoreUnavailable
from safepassage.store.hit_review import (
    HitEvidence,
    HitState,
    KeptProbe,
    ProbeAlreadyConfirmed,
    ProbeDismissed,
    ProbeNotFound,
    ProbeReview,
    QueuedHit,
    ReviewAction,
    SameReviewer,
)
from safepassage.store.sealing import TemplateSealer

__all__ = [
    "SCHEMA_VERSION",
    "HitEvidence",
    "HitState",
    "KeptProbe",
    "ProbeAlreadyConfirmed",
    "ProbeDismissed",
    "ProbeNotFound",
    "ProbeReview",
    "ProbeStore",
    "QueuedHit",
    "ReviewAction",
    "SameReviewer",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
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
# Version 3: what the review queue shows of a hit, each review's action, and dismissed hits (no
# biometric data: the id, its gallery, who dismissed it and when).
_V3 = (
    "ALTER TABLE probes ADD COLUMN score REAL",
    "ALTER TABLE probes ADD COLUMN threshold REAL",
    "ALTER TABLE probes ADD COLUMN legal_basis TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE probes ADD COLUMN authorisation_expires REAL",
    "ALTER TABLE probes ADD COLUMN face_crop BLOB",
    "ALTER TABLE probe_reviews ADD COLUMN action TEXT NOT NULL DEFAULT 'confirm'",
    """CREATE TABLE dismissed_probes (
    probe_id INTEGER PRIMARY KEY,
    gallery_id TEXT NOT NULL,
    dismissed_at REAL NOT NULL,
    dismissed_by TEXT NOT NULL
)""",
)
# Sealing binds a row's id and a namespace, so a probe blob never opens as a template.
_NAMESPACE = "camera-probe:"
_CROP_NAMESPACE = "camera-probe-crop:"
_MAX_ID = 2**63 - 1
# Random ids collide once in billions of hits; a few fresh draws settle it.
_ID_DRAWS = 8


def _not_kept(probe_id: int) -> ProbeNotFound:
    return ProbeNotFound(f"probe {probe_id} is not kept (never a hit, or purged after the retention)")


def _check_id(probe_id: int) -> None:
    if not 0 < probe_id <= _MAX_ID:
        raise _not_kept(probe_id)


_COLUMNS = (
    "probe_id, gallery_id, camera_id, captured_at, candidate, confirmed_at, confirmed_by, authorisation_id,"
    " score, threshold, legal_basis, authorisation_expires, face_crop IS NOT NULL"
)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


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
        confirmed_at=_number(confirmed_at),
    )


def _evidence(row: Any) -> HitEvidence:
    return HitEvidence(_number(row[8]), _number(row[9]), row[10], _number(row[11]), bool(row[12]))


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
        elif found == 0:
            conn.execute(_PROBES)
        if found < 2:
            for statement in _NEW:
                conn.execute(statement)
        if version_one:
            conn.execute(_HISTORY_FROM_V1)
        if found < 3:
            for statement in _V3:
                conn.execute(statement)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    if version_one or 0 < found < SCHEMA_VERSION:
        log.info("probe store %s migrated from schema %d to %d", path, found or 1, SCHEMA_VERSION)


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
        evidence: HitEvidence | None = None,
        face_crop: bytes = b"",
    ) -> int:
        """Keep a probe that produced a hit (with the camera's face crop, if it sent one); returns its
        (random) id for the reviewers."""
        data = np.asarray(vector, dtype=np.float32)
        moment = time.time() if captured_at is None else captured_at
        shown = evidence or HitEvidence()
        for _ in range(_ID_DRAWS):
            probe_id = secrets.randbelow(_MAX_ID) + 1
            sealed = self._sealer.seal(data, gallery_id=_NAMESPACE + gallery_id, template_id=probe_id)
            crop = (
                self._sealer.seal_bytes(face_crop, context=_crop_context(gallery_id, probe_id))
                if face_crop
                else None
            )
            try:
                with self._db.write("keep a probe") as conn:
                    if conn.execute(
                        "SELECT 1 FROM dismissed_probes WHERE probe_id = ?", (probe_id,)
                    ).fetchone():
                        continue  # a dismissed hit's id stays its own
                    conn.execute(
                        "INSERT INTO probes (probe_id, gallery_id, camera_id, captured_at, dimension, sealed,"
                        " candidate, authorisation_id, score, threshold, legal_basis, authorisation_expires,"
                        " face_crop) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            probe_id,
                            gallery_id,
                            camera_id,
                            moment,
                            data.size,
                            sealed,
                            candidate,
                            authorisation_id,
                            shown.score,
                            shown.threshold,
                            shown.legal_basis,
                            shown.authorisation_expires,
                            crop,
                        ),
                    )
            except sqlite3.IntegrityError:
                continue  # the id is taken: draw another
            return probe_id
        raise StoreUnavailable(f"no free probe id after {_ID_DRAWS} random draws")  # pragma: no cover

    def _decided(self, conn: sqlite3.Connection, probe_id: int, gallery_id: str) -> Any:
        """The probe's confirmed_at (None: undecided); raises if it is dismissed or not kept there."""
        row = conn.execute(
            "SELECT confirmed_at FROM probes WHERE probe_id = ? AND gallery_id = ?", (probe_id, gallery_id)
        ).fetchone()
        if row is not None:
            return row
        dismissed = conn.execute(
            "SELECT 1 FROM dismissed_probes WHERE probe_id = ? AND gallery_id = ?", (probe_id, gallery_id)
        ).fetchone()
        if dismissed is None:
            raise _not_kept(probe_id)
        return None

    def _review(
        self, probe_id: int, gallery_id: str, reviewer: str, action: ReviewAction
    ) -> tuple[bool, Exception | None]:
        """Record one review in one transaction; returns (erased, the refusal to raise if any)."""
        _check_id(probe_id)
        now = time.time()
        refusal: Exception | None = None
        erased = False
        with self._db.write(f"{action.value} a kept hit") as conn:
            row = self._decided(conn, probe_id, gallery_id)
            earlier = conn.execute(
                "SELECT reviewed_by, action FROM probe_reviews WHERE probe_id = ? AND accepted = 1",
                (probe_id,),
            ).fetchall()
            if row is None:
                refusal = ProbeDismissed(f"probe {probe_id} was dismissed and erased; it cannot be reviewed")
            elif row[0] is not None:
                refusal = ProbeAlreadyConfirmed(
                    f"probe {probe_id} was confirmed already by two reviewers; their confirmation stands"
                )
            elif any(by == reviewer for by, _ in earlier):
                refusal = SameReviewer(
                    f"{reviewer} has reviewed probe {probe_id} already: four eyes need another reviewer"
                )
            conn.execute(
                "INSERT INTO probe_reviews (probe_id, reviewed_at, reviewed_by, accepted, action)"
                " VALUES (?, ?, ?, ?, ?)",
                (probe_id, now, reviewer, int(refusal is None), action.value),
            )
            if refusal is None and action is ReviewAction.CONFIRM and earlier:
                conn.execute(
                    "UPDATE probes SET confirmed_at = ?, confirmed_by = ? WHERE probe_id = ?",
                    (now, reviewer, probe_id),
                )
            if refusal is None and action is ReviewAction.DISMISS:
                conn.execute("DELETE FROM probes WHERE probe_id = ?", (probe_id,))
                conn.execute(
                    "INSERT INTO dismissed_probes (probe_id, gallery_id, dismissed_at, dismissed_by)"
                    " VALUES (?, ?, ?, ?)",
                    (probe_id, gallery_id, now, reviewer),
                )
                erased = True
        return erased, refusal

    def confirm(self, probe_id: int, gallery_id: str, confirmed_by: str) -> QueuedHit:
        """A reviewer confirms the hit. The first confirmation leaves it awaiting a second review; a
        second by ANOTHER reviewer confirms it (kept beyond the retention as evidence).

        Raises SameReviewer (the same reviewer again), ProbeAlreadyConfirmed, ProbeDismissed; a
        refused attempt changes nothing but the history.
        """
        _, refusal = self._review(probe_id, gallery_id, confirmed_by, ReviewAction.CONFIRM)
        if refusal is not None:
            raise refusal
        return self.queued(probe_id, gallery_id)

    def dismiss(self, probe_id: int, gallery_id: str, dismissed_by: str) -> None:
        """A reviewer dismisses the hit: the probe is erased at once, its bytes gone from the file.

        Allowed while the hit awaits review (a second reviewer may disagree with the first); raises
        SameReviewer, ProbeAlreadyConfirmed or ProbeDismissed otherwise.
        """
        erased, refusal = self._review(probe_id, gallery_id, dismissed_by, ReviewAction.DISMISS)
        if refusal is not None:
            raise refusal
        if erased:
            # secure_delete zeroed the pages; the checkpoint moves that into the file and empties the WAL.
            with self._db.read("erase a dismissed probe") as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("a dismissed CCTV probe was erased from the probe store")

    def get(self, probe_id: int, gallery_id: str | None = None) -> KeptProbe:
        """The kept probe; with `gallery_id`, only if it was kept for that gallery (else ProbeNotFound)."""
        return self._row(probe_id, gallery_id)[0]

    def _row(self, probe_id: int, gallery_id: str | None) -> tuple[KeptProbe, HitEvidence]:
        _check_id(probe_id)
        with self._db.read("read a probe") as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
        if row is None or (gallery_id is not None and row[1] != gallery_id):
            raise _not_kept(probe_id)
        return _kept(row), _evidence(row)

    def queued(self, probe_id: int, gallery_id: str) -> QueuedHit:
        """The hit as its reviewers see it (ProbeNotFound unless kept for that gallery)."""
        probe, evidence = self._row(probe_id, gallery_id)
        return QueuedHit(probe, evidence, tuple(r for r in self.history(probe_id) if r.accepted))

    def queue(self, gallery_id: str, camera_id: str = "") -> list[QueuedHit]:
        """The gallery's kept hits (only `camera_id`'s, if given), oldest first, with accepted reviews."""
        query = f"SELECT {_COLUMNS} FROM probes WHERE gallery_id = ?"
        parameters: tuple[str, ...] = (gallery_id,)
        if camera_id:
            query += " AND camera_id = ?"
            parameters += (camera_id,)
        with self._db.read("list kept hits") as conn:
            rows = conn.execute(query + " ORDER BY captured_at, probe_id", parameters).fetchall()
            reviews = conn.execute(
                "SELECT r.probe_id, r.reviewed_at, r.reviewed_by, r.accepted, r.action FROM probe_reviews r"
                " JOIN probes p ON p.probe_id = r.probe_id WHERE p.gallery_id = ? AND r.accepted = 1"
                " ORDER BY r.reviewed_at, r.rowid",
                (gallery_id,),
            ).fetchall()
        by_probe: dict[int, list[ProbeReview]] = {}
        for probe_id, *review in reviews:
            by_probe.setdefault(int(probe_id), []).append(_review_of(review))
        return [QueuedHit(_kept(row), _evidence(row), tuple(by_probe.get(int(row[0]), ()))) for row in rows]

    def history(self, probe_id: int) -> list[ProbeReview]:
        """Every review attempt on the probe, oldest first (kept after a dismissal erased the probe)."""
        _check_id(probe_id)
        with self._db.read("read a probe's history") as conn:
            rows = conn.execute(
                "SELECT reviewed_at, reviewed_by, accepted, action FROM probe_reviews WHERE probe_id = ?"
                " ORDER BY reviewed_at, rowid",
                (probe_id,),
            ).fetchall()
        return [_review_of(row) for row in rows]

    def face_crop(self, probe_id: int, gallery_id: str) -> bytes | None:
        """The camera's face crop of the hit (a JPEG), None if it sent none; ProbeNotFound unless kept."""
        _check_id(probe_id)
        with self._db.read("read a hit's face crop") as conn:
            row = conn.execute(
                "SELECT face_crop FROM probes WHERE probe_id = ? AND gallery_id = ?", (probe_id, gallery_id)
            ).fetchone()
        if row is None:
            raise _not_kept(probe_id)
        if row[0] is None:
            return None
        return self._sealer.open_bytes(bytes(row[0]), context=_crop_context(gallery_id, probe_id))

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


def _crop_context(gallery_id: str, probe_id: int) -> tuple[str, str, str]:
    return (_CROP_NAMESPACE, gallery_id, str(probe_id))


def _review_of(row: Any) -> ProbeReview:
    at, by, accepted, action = row
    return ProbeReview(float(at), str(by), bool(accepted), ReviewAction(action))
