"""Gallery rows: create, read, list, thresholds, calibrations, delete and state.

``Galleries`` runs each operation as one transaction of its own on the store's
connections (safepassage.store.connections: writes serialised, reads pooled);
``gallery_row`` reads a gallery's row inside a transaction that the caller
already holds, as the template operations do. A gallery's size,
generation and digest are written only by those template operations
(safepassage.store.templates, safepassage.store.quarantine); here they are read, never changed.

Deleting a gallery cascades to its templates and calibration (schema:
ON DELETE CASCADE) and then checkpoints the WAL, as every erasure does.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from safepassage.store.connections import Connections
from safepassage.store.digest import EMPTY_DIGEST
from safepassage.store.errors import GalleryExists, GalleryNotFound, StoreCorrupted
from safepassage.store.records import GalleryRecord, GalleryState, check_threshold

__all__ = ["Galleries", "GalleryRow", "gallery_row"]

_log = logging.getLogger(__name__)

_GALLERY_COLUMNS = (
    "gallery_pk, gallery_id, purpose, model_name, dimension, metric, threshold, created_at, "
    "size, generation, digest, target_fpir, protection_version"
)


class GalleryRow:
    """One galleries row as read inside a transaction."""

    __slots__ = ("digest", "generation", "pk", "record", "size")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.pk = int(row[0])
        gallery_id, purpose, model_name, dimension, metric, threshold, created_at = row[1:8]
        self.record = GalleryRecord(
            gallery_id,
            purpose,
            model_name,
            dimension,
            metric,
            threshold,
            created_at,
            target_fpir=row[11],
            protection_version=row[12],
        )
        self.size = int(row[8])
        self.generation = int(row[9])
        self.digest = bytes(row[10])


def gallery_row(conn: sqlite3.Connection, gallery_id: str) -> GalleryRow:
    """The gallery's row, read in the caller's transaction. Raises GalleryNotFound."""
    row = conn.execute(
        f"SELECT {_GALLERY_COLUMNS} FROM galleries WHERE gallery_id = ?", (gallery_id,)
    ).fetchone()
    if row is None:
        raise GalleryNotFound(f"gallery {gallery_id!r} does not exist")
    return GalleryRow(row)


class Galleries:
    """The galleries table (and gallery_calibrations), one transaction per method."""

    def __init__(self, connections: Connections) -> None:
        self._db = connections

    def create(self, record: GalleryRecord) -> None:
        """Create an empty gallery. Raises GalleryExists."""
        with self._db.write("create a gallery") as conn:
            try:
                conn.execute(
                    "INSERT INTO galleries (gallery_id, purpose, model_name, dimension, metric,"
                    " threshold, created_at, digest, target_fpir, protection_version)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.gallery_id,
                        record.purpose,
                        record.model_name,
                        record.dimension,
                        record.metric,
                        record.threshold,
                        record.created_at,
                        EMPTY_DIGEST,
                        record.target_fpir,
                        record.protection_version,
                    ),
                )
            except sqlite3.IntegrityError:
                raise GalleryExists(f"gallery {record.gallery_id!r} already exists") from None
        _log.info("created gallery %r (dimension %d)", record.gallery_id, record.dimension)

    def get(self, gallery_id: str) -> GalleryRecord:
        """The gallery's record. Raises GalleryNotFound."""
        with self._db.read("read a gallery") as conn:
            return gallery_row(conn, gallery_id).record

    def records(self) -> list[GalleryRecord]:
        """Every gallery, ordered by gallery id."""
        with self._db.read("list galleries") as conn:
            rows = conn.execute(f"SELECT {_GALLERY_COLUMNS} FROM galleries ORDER BY gallery_id").fetchall()
        return [GalleryRow(row).record for row in rows]

    def update_threshold(self, gallery_id: str, threshold: float) -> GalleryRecord:
        """Set the match threshold; returns the updated record. Raises GalleryNotFound."""
        value = check_threshold(threshold)
        with self._db.write("update a threshold") as conn:
            gallery = gallery_row(conn, gallery_id)
            conn.execute("UPDATE galleries SET threshold = ? WHERE gallery_pk = ?", (value, gallery.pk))
            record = gallery_row(conn, gallery_id).record
        _log.info("gallery %r threshold set to %s", gallery_id, value)
        return record

    def set_calibration(
        self,
        gallery_id: str,
        calibration: bytes | None,
        target_fpir: float | None,
        threshold: float,
        cohort: bytes | None = None,
    ) -> GalleryRecord:
        """Store a calibration (None keeps the one stored) with its sealed background cohort (None:
        none, raw distances; safepassage.store.cohort), the FPIR the threshold follows (None: fixed)
        and the threshold it gives now, in one transaction."""
        value = check_threshold(threshold)
        with self._db.write("calibrate a gallery") as conn:
            gallery = gallery_row(conn, gallery_id)
            if calibration is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO gallery_calibrations"
                    " (gallery_pk, calibration, calibrated_at, cohort) VALUES (?, ?, ?, ?)",
                    (gallery.pk, calibration, time.time(), cohort),
                )
            conn.execute(
                "UPDATE galleries SET threshold = ?, target_fpir = ? WHERE gallery_pk = ?",
                (value, target_fpir, gallery.pk),
            )
            record = gallery_row(conn, gallery_id).record
        _log.info("gallery %r calibrated (target FPIR %s)", gallery_id, target_fpir)
        return record

    def calibration(self, gallery_id: str) -> tuple[bytes, bytes | None] | None:
        """The stored calibration's bytes and its sealed background cohort (or None), or None when
        the gallery is not calibrated. Raises GalleryNotFound."""
        with self._db.read("read a calibration") as conn:
            gallery = gallery_row(conn, gallery_id)
            row = conn.execute(
                "SELECT calibration, cohort FROM gallery_calibrations WHERE gallery_pk = ?", (gallery.pk,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), None if row[1] is None else bytes(row[1]))

    def delete(self, gallery_id: str) -> int:
        """Delete a gallery and erase its templates; returns how many. Raises GalleryNotFound."""
        with self._db.write("delete a gallery") as conn:
            gallery = gallery_row(conn, gallery_id)
            # Every row, quarantined ones too (the gallery's size counts only the live ones).
            (erased,) = conn.execute(
                "SELECT count(*) FROM templates WHERE gallery_pk = ?", (gallery.pk,)
            ).fetchone()
            conn.execute("DELETE FROM galleries WHERE gallery_pk = ?", (gallery.pk,))
            left = conn.execute(
                "SELECT count(*) FROM templates WHERE gallery_pk = ?", (gallery.pk,)
            ).fetchone()[0]
            if left:
                raise StoreCorrupted(f"gallery {gallery_id!r}: cascade left {left} templates")
        self._db.checkpoint()
        _log.info("deleted gallery %r and erased %d templates", gallery_id, erased)
        return int(erased)

    def state(self, gallery_id: str) -> GalleryState:
        """Size, generation and content digest, read together. Raises GalleryNotFound."""
        with self._db.read("read a gallery state") as conn:
            gallery = gallery_row(conn, gallery_id)
        return GalleryState(gallery_id, gallery.size, gallery.generation, gallery.digest)
