"""Subjects enrolled from several captures: each capture sealed, the subject searched by their fusion.

A subject (reference id) of one capture is one templates row, as every gallery has held since
version 1. Adding captures to it keeps each capture here, sealed, and replaces its templates row
with their fused template, in one transaction: the index and the gallery's state (size, digest)
still hold exactly one row per subject, so identification answers each subject once and costs
what a one-capture gallery costs. How captures fuse (the mean, for the service's models;
safepassage.matcher.fusion) is the caller's: the store does not know metrics.

A capture's seal is bound to its gallery and its capture id under a namespace of its own
(``subject-capture:``), so a capture blob never opens as a template, nor a template as a capture.
Captures are stored as the gallery keeps templates (under its protection key, if any), so re-keying
a protected gallery rewrites them in the same transaction as its templates (`rekey`).

Erasure reaches every capture: deleting a subject or a gallery deletes its captures in the same
transaction (safepassage.store.templates, and the cascade of gallery_pk).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from safepassage.core.sqlite import in_chunks
from safepassage.store.connections import Connections
from safepassage.store.digest import row_digests, xor_digests
from safepassage.store.errors import InvalidTemplate, ReferenceNotFound, TooManyCaptures
from safepassage.store.galleries import GalleryRow, gallery_row
from safepassage.store.records import SubjectChange, check_reference_id
from safepassage.store.row_ids import allocate_ids
from safepassage.store.sealing import TemplateSealer
from safepassage.store.vectors import check_vectors

__all__ = ["Captures", "Fuse", "Rewrite", "delete_subject_captures", "rekey_captures"]

_log = logging.getLogger(__name__)

_NAMESPACE = "subject-capture:"

# The caller's fusion: every capture of a subject, (m, d), to its fused template, (d,).
Fuse = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
# A re-keying of a gallery's protected vectors, (n, d) to (n, d).
Rewrite = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def _context(gallery_id: str, capture_id: int) -> tuple[str, str, str]:
    return (_NAMESPACE, gallery_id, str(capture_id))


def _open_captures(
    sealer: TemplateSealer, gallery_id: str, rows: Sequence[tuple[int, bytes]], dimension: int
) -> npt.NDArray[np.float32]:
    vectors = [
        np.frombuffer(sealer.open_bytes(bytes(blob), context=_context(gallery_id, int(cid))), dtype="<f4")
        for cid, blob in rows
    ]
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dimension), np.float32)
    if matrix.shape[1] != dimension:
        raise InvalidTemplate(f"a capture of gallery {gallery_id!r} does not have {dimension} values")
    return matrix


def _seal(sealer: TemplateSealer, gallery_id: str, capture_id: int, vector: npt.NDArray[np.float32]) -> bytes:
    return sealer.seal_bytes(vector.tobytes(), context=_context(gallery_id, capture_id))


def _insert_captures(
    conn: sqlite3.Connection,
    sealer: TemplateSealer,
    gallery_id: str,
    gallery_pk: int,
    reference_id: str,
    matrix: npt.NDArray[np.float32],
) -> None:
    ids = allocate_ids(conn, "captures", len(matrix))
    now = time.time()
    conn.executemany(
        "INSERT INTO captures (capture_id, gallery_pk, reference_id, sealed, added_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (cid, gallery_pk, reference_id, _seal(sealer, gallery_id, cid, row), now)
            for cid, row in zip(ids, np.ascontiguousarray(matrix, dtype="<f4"), strict=True)
        ],
    )


def delete_subject_captures(conn: sqlite3.Connection, gallery_pk: int, reference_id: str) -> int:
    """Delete a subject's captures in the caller's transaction; returns how many."""
    cursor = conn.execute(
        "DELETE FROM captures WHERE gallery_pk = ? AND reference_id = ?", (gallery_pk, reference_id)
    )
    return int(cursor.rowcount)


def rekey_captures(
    conn: sqlite3.Connection, sealer: TemplateSealer, gallery: GalleryRow, rewrite: Rewrite
) -> int:
    """Rewrite every capture of a gallery with ``rewrite`` (a protection re-keying), in the caller's
    transaction; returns how many."""
    gallery_id, gallery_pk, dimension = gallery.record.gallery_id, gallery.pk, gallery.record.dimension
    rows = conn.execute(
        "SELECT capture_id, sealed FROM captures WHERE gallery_pk = ? ORDER BY capture_id", (gallery_pk,)
    ).fetchall()
    if not rows:
        return 0
    fresh = np.ascontiguousarray(rewrite(_open_captures(sealer, gallery_id, rows, dimension)), dtype="<f4")
    conn.executemany(
        "UPDATE captures SET sealed = ? WHERE capture_id = ?",
        [
            (_seal(sealer, gallery_id, int(cid), row), int(cid))
            for (cid, _), row in zip(rows, fresh, strict=True)
        ],
    )
    return len(rows)


class Captures:
    """The captures table, one transaction per method."""

    def __init__(self, connections: Connections, sealer: TemplateSealer) -> None:
        self._db = connections
        self._sealer = sealer

    def add(
        self,
        gallery_id: str,
        reference_id: str,
        vectors: Sequence[npt.ArrayLike],
        *,
        fuse: Fuse,
        most: int,
    ) -> SubjectChange:
        """Add captures to an enrolled subject and make its template their fusion, all or nothing.

        A subject of one capture first keeps its template as its first capture. Raises
        GalleryNotFound, ReferenceNotFound (also for a quarantined subject: delete it and enrol it
        again), InvalidTemplate, TooManyCaptures (``most`` captures a subject may hold).
        """
        reference_id = check_reference_id(reference_id)
        if not vectors:
            raise InvalidTemplate("no captures to add")
        with self._db.write("add captures") as conn:
            gallery = gallery_row(conn, gallery_id)
            dimension = gallery.record.dimension
            matrix = check_vectors(vectors, dimension)
            row = conn.execute(
                "SELECT template_id, sealed, row_digest, quarantined, enrolled_at FROM templates"
                " WHERE gallery_pk = ? AND reference_id = ?",
                (gallery.pk, reference_id),
            ).fetchone()
            if row is None or row[3] is not None:
                aside = "" if row is None else f" (quarantined, {row[3]}: delete it and enrol it again)"
                raise ReferenceNotFound(f"reference {reference_id!r} is not in gallery {gallery_id!r}{aside}")
            old_id = int(row[0])
            held = conn.execute(
                "SELECT capture_id, sealed FROM captures WHERE gallery_pk = ? AND reference_id = ?"
                " ORDER BY capture_id",
                (gallery.pk, reference_id),
            ).fetchall()
            if held:
                before = _open_captures(self._sealer, gallery_id, held, dimension)
                new = matrix
            else:  # one capture so far: its template is that capture
                before = self._sealer.open(
                    row[1], gallery_id=gallery_id, template_id=old_id, dimension=dimension
                )[None, :]
                new = np.concatenate([before, matrix])
            every = np.concatenate([before, matrix])
            if len(every) > most:
                raise TooManyCaptures(
                    f"reference {reference_id!r} of gallery {gallery_id!r} holds {len(before)} captures;"
                    f" a subject holds at most {most}"
                )
            fused = check_vectors([fuse(every)], dimension)
            _insert_captures(conn, self._sealer, gallery_id, gallery.pk, reference_id, new)
            (new_id,) = allocate_ids(conn, "templates", 1)
            (sealed,) = self._sealer.seal_batch(fused, gallery_id=gallery_id, template_ids=[new_id])
            (digest,) = row_digests(self._sealer.digest_key, [new_id], fused)
            conn.execute("DELETE FROM templates WHERE template_id = ?", (old_id,))
            conn.execute(
                "INSERT INTO templates (template_id, gallery_pk, reference_id, sealed, row_digest,"
                " enrolled_at) VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, gallery.pk, reference_id, sealed, digest, float(row[4])),
            )
            conn.execute(
                "UPDATE galleries SET generation = generation + 1, digest = ? WHERE gallery_pk = ?",
                (xor_digests([bytes(row[2]), digest], gallery.digest), gallery.pk),
            )
        # No checkpoint: the replaced row is this enrolled subject's own template (its first capture,
        # kept above, or an earlier mean), not erased data; erasure checkpoints (templates.delete).
        _log.debug(
            "gallery %r: template %d fused into %d (%d captures)", gallery_id, old_id, new_id, len(every)
        )
        return SubjectChange(reference_id, removed=old_id, added=new_id, captures=len(every))

    def get(self, gallery_id: str, reference_id: str) -> npt.NDArray[np.float32]:
        """A subject's captures, (m, d), oldest first; empty for a subject of one capture (its
        template is that capture). Raises GalleryNotFound, TemplateIntegrityError."""
        with self._db.read("read captures") as conn:
            gallery = gallery_row(conn, gallery_id)
            rows = conn.execute(
                "SELECT capture_id, sealed FROM captures WHERE gallery_pk = ? AND reference_id = ?"
                " ORDER BY capture_id",
                (gallery.pk, reference_id),
            ).fetchall()
        return _open_captures(self._sealer, gallery_id, rows, gallery.record.dimension)

    def counts(self, gallery_id: str, reference_ids: Sequence[str]) -> dict[str, int]:
        """Captures held by each of these subjects that holds two or more (the others hold one)."""
        wanted = sorted(set(reference_ids))
        found: dict[str, int] = {}
        with self._db.read("count captures") as conn:
            pk = gallery_row(conn, gallery_id).pk
            for marks, chunk in in_chunks(wanted):
                found.update(
                    (str(ref), int(n))
                    for ref, n in conn.execute(
                        "SELECT reference_id, count(*) FROM captures"
                        f" WHERE gallery_pk = ? AND reference_id IN ({marks}) GROUP BY reference_id",
                        (pk, *chunk),
                    )
                )
        return found

    def summary(self, gallery_id: str) -> tuple[int, int]:
        """(subjects with several captures, captures they hold) in a gallery."""
        with self._db.read("count captures") as conn:
            pk = gallery_row(conn, gallery_id).pk
            subjects, held = conn.execute(
                "SELECT count(DISTINCT reference_id), count(*) FROM captures WHERE gallery_pk = ?", (pk,)
            ).fetchone()
        return int(subjects), int(held)
