"""Reference images for human review: per subject, a small face crop, sealed, in galleries that opt in.

A gallery keeps them only when its administrator asked at creation (`keep_for`); others keep none,
and the reviewer's screen says so. Per subject one image: the crop of the subject's FIRST capture
(the enrolment); later captures add templates, not images, so the face a reviewer compares with is
the one enrolled, and a capture added later cannot swap it. The crop (a JPEG of the face with a
margin, at most 160 px: safepassage/face/reference_crop.py), never the whole photo.

Sealed like templates (`TemplateSealer.seal_bytes`) under a namespace of its own and bound to the
gallery and the subject's reference id, so a blob moved to another row, gallery or store does not
open. Erased with the subject (DeleteTemplate), with the gallery, and when the gallery stops
existing; every erasure zeroes the pages (``secure_delete``) and checkpoints the WAL, so the bytes
leave the file at once. One file of its own (like the kept CCTV probes): images never mix with the
template store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from safepassage.core.errors import NotFound
from safepassage.core.sqlite import Database, write_transaction
from safepassage.store.connections import STORE_ERRORS
from safepassage.store.errors import StoreError
from safepassage.store.sealing import TemplateSealer

__all__ = ["ReferenceImage", "ReferenceImageNotKept", "ReferenceImageStore"]

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS keeping (gallery_id TEXT PRIMARY KEY, since REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS images (
    gallery_id TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    kept_at REAL NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (gallery_id, reference_id)
)""",
)
_NAMESPACE = "reference-image:"


class ReferenceImageNotKept(StoreError, NotFound):
    """The gallery keeps no reference images, or none for that subject."""


@dataclass(frozen=True)
class ReferenceImage:
    gallery_id: str
    reference_id: str
    kept_at: float
    jpeg: bytes


def _context(gallery_id: str, reference_id: str) -> tuple[str, str, str]:
    return (_NAMESPACE, gallery_id, reference_id)


def _prepare(conn: sqlite3.Connection) -> None:
    with write_transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


class ReferenceImageStore:
    def __init__(self, database: Database, sealer: TemplateSealer) -> None:
        self._db, self._sealer = database, sealer

    @classmethod
    def open(cls, path: Path, sealer: TemplateSealer) -> ReferenceImageStore:
        """Open (or create: 0600 in a 0700 folder) the reference-image file."""
        return cls(Database.open(path, STORE_ERRORS, _prepare, action="prepare the reference images"), sealer)

    def close(self) -> None:
        self._db.close()

    def keep_for(self, gallery_id: str) -> None:
        """The gallery keeps reference images from now on (asked at its creation)."""
        with self._db.write("keep reference images for a gallery") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO keeping (gallery_id, since) VALUES (?, ?)", (gallery_id, time.time())
            )

    def keeps(self, gallery_id: str) -> bool:
        with self._db.read("read whether a gallery keeps reference images") as conn:
            row = conn.execute("SELECT 1 FROM keeping WHERE gallery_id = ?", (gallery_id,)).fetchone()
        return row is not None

    def put_first(self, gallery_id: str, reference_id: str, jpeg: bytes) -> bool:
        """Keep the subject's image unless one is kept already (the first capture's stays); False when the
        gallery keeps none or the subject has one."""
        sealed = self._sealer.seal_bytes(jpeg, context=_context(gallery_id, reference_id))
        with self._db.write("keep a reference image") as conn:
            if conn.execute("SELECT 1 FROM keeping WHERE gallery_id = ?", (gallery_id,)).fetchone() is None:
                return False
            inserted = conn.execute(
                "INSERT OR IGNORE INTO images (gallery_id, reference_id, kept_at, sealed)"
                " VALUES (?, ?, ?, ?)",
                (gallery_id, reference_id, time.time(), sealed),
            ).rowcount
        return bool(inserted)

    def get(self, gallery_id: str, reference_id: str) -> ReferenceImage:
        with self._db.read("read a reference image") as conn:
            row = conn.execute(
                "SELECT kept_at, sealed FROM images WHERE gallery_id = ? AND reference_id = ?",
                (gallery_id, reference_id),
            ).fetchone()
        if row is None:
            raise ReferenceImageNotKept(
                f"no reference image is kept for that subject in gallery {gallery_id!r}"
            )
        jpeg = self._sealer.open_bytes(bytes(row[1]), context=_context(gallery_id, reference_id))
        return ReferenceImage(gallery_id, reference_id, float(row[0]), jpeg)

    def count(self, gallery_id: str) -> int:
        with self._db.read("count reference images") as conn:
            return int(
                conn.execute("SELECT count(*) FROM images WHERE gallery_id = ?", (gallery_id,)).fetchone()[0]
            )

    def erase_subject(self, gallery_id: str, reference_id: str) -> int:
        """Erase the subject's image (DeleteTemplate): its bytes leave the file at once."""
        return self._db.erase(
            "erase a reference image",
            "DELETE FROM images WHERE gallery_id = ? AND reference_id = ?",
            (gallery_id, reference_id),
        )

    def erase_gallery(self, gallery_id: str) -> int:
        """Erase every image of the gallery and its choice to keep them (DeleteGallery)."""
        erased = self._db.erase(
            "erase a gallery's reference images", "DELETE FROM images WHERE gallery_id = ?", (gallery_id,)
        )
        with self._db.write("forget a gallery's reference images") as conn:
            conn.execute("DELETE FROM keeping WHERE gallery_id = ?", (gallery_id,))
        if erased:
            log.info("erased %d reference images with their gallery", erased)
        return erased

    def forget_galleries_except(self, galleries: set[str]) -> int:
        """At start-up: erase the images of galleries that no longer exist (a stop between two erasures)."""
        with self._db.read("list galleries keeping reference images") as conn:
            known = {
                row[0]
                for row in conn.execute("SELECT gallery_id FROM keeping UNION SELECT gallery_id FROM images")
            }
        return sum(self.erase_gallery(gone) for gone in sorted(known - galleries))
