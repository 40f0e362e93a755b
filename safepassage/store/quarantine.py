"""Quarantined templates: stored rows kept aside, out of the gallery's index, until an operator deletes them.

A row is quarantined when the matcher finds at start-up that it must not be
indexed: its vector is beyond what the gallery's model can produce (an older
version accepted it, and FAISS aborts on such values), or its sealed blob no
longer opens. It is neither indexed nor deleted: it stays in the file with
its reference id (which stays taken), DescribeGallery counts it, and
DeleteTemplate erases it like any row.

A gallery's size, generation and digest describe its live rows only, so the
index (which never holds a quarantined row) agrees with them: quarantining
moves rows out of that state in the same transaction that marks them.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from safepassage.store.connections import Connections
from safepassage.store.digest import xor_digests
from safepassage.store.galleries import gallery_row
from safepassage.store.templates import TemplateIds

__all__ = ["Quarantine", "QuarantineReason", "QuarantinedTemplate"]

_log = logging.getLogger(__name__)

# Bound variables per IN (...) query, as in safepassage.store.templates.
_CHUNK = 500


class QuarantineReason(enum.StrEnum):
    OUT_OF_BOUNDS = "out_of_bounds"  # beyond what the gallery's model can produce
    UNREADABLE = "unreadable"  # the sealed blob failed to open


@dataclass(frozen=True)
class QuarantinedTemplate:
    template_id: int
    reference_id: str
    reason: QuarantineReason


class Quarantine:
    """The quarantined rows of every gallery, one transaction per method."""

    def __init__(self, connections: Connections) -> None:
        self._db = connections

    def add(self, gallery_id: str, template_ids: TemplateIds, reason: QuarantineReason) -> int:
        """Quarantine these live rows of the gallery; returns how many were (others are skipped).

        Raises GalleryNotFound.
        """
        wanted = sorted({int(t) for t in template_ids})
        if not wanted:
            return 0
        with self._db.write("quarantine templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            rows: list[tuple[int, bytes]] = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows.extend(
                    (int(tid), bytes(digest))
                    for tid, digest in conn.execute(
                        "SELECT template_id, row_digest FROM templates WHERE gallery_pk = ?"
                        f" AND quarantined IS NULL AND template_id IN ({marks})",
                        (gallery.pk, *chunk),
                    )
                )
            if not rows:
                return 0
            conn.executemany(
                "UPDATE templates SET quarantined = ? WHERE template_id = ?",
                [(reason.value, tid) for tid, _ in rows],
            )
            # The rows leave the gallery's state: an index without them agrees with it.
            conn.execute(
                "UPDATE galleries SET size = size - ?, generation = generation + 1, digest = ?"
                " WHERE gallery_pk = ?",
                (len(rows), xor_digests([d for _, d in rows], gallery.digest), gallery.pk),
            )
        _log.info("gallery %r: quarantined %d templates (%s)", gallery_id, len(rows), reason.value)
        return len(rows)

    def count(self, gallery_id: str) -> int:
        """How many of the gallery's rows are quarantined. Raises GalleryNotFound."""
        with self._db.read("count quarantined templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            row = conn.execute(
                "SELECT count(*) FROM templates WHERE gallery_pk = ? AND quarantined IS NOT NULL",
                (gallery.pk,),
            ).fetchone()
        return int(row[0])

    def listing(self, gallery_id: str, *, limit: int = 1000) -> list[QuarantinedTemplate]:
        """The gallery's quarantined rows in template-id order (at most `limit`). Raises GalleryNotFound."""
        with self._db.read("list quarantined templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            rows = conn.execute(
                "SELECT template_id, reference_id, quarantined FROM templates"
                " WHERE gallery_pk = ? AND quarantined IS NOT NULL ORDER BY template_id LIMIT ?",
                (gallery.pk, max(0, int(limit))),
            ).fetchall()
        return [QuarantinedTemplate(int(t), str(r), QuarantineReason(q)) for t, r, q in rows]
