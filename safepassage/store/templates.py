"""Template rows: sealed face templates, written and read in transactions that keep their gallery's state.

Every write (insert, rewrite, delete) updates the gallery's size, generation and digest in the same
transaction as its rows, so the matcher's index can be checked against the state it reports
(safepassage.store.digest). A template's id is allocated before its insert because its seal binds
it (safepassage.store.sealing); ids are never reused. Reads open the seals: a row that no longer
opens is TemplateIntegrityError, or is set aside by `iterate` for quarantine
(safepassage.store.quarantine). Quarantined rows are not live: they are neither read nor counted,
and only `delete` touches them.

Erasure: ``secure_delete`` zeroes deleted rows in their pages; after a delete or rewrite the WAL is
checkpointed and truncated (best effort, without waiting for readers) so the old frames that still
hold the sealed blobs leave the disk too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from safepassage.core.sqlite import in_chunks
from safepassage.store.captures import delete_subject_captures, rekey_captures
from safepassage.store.cohort import rekey_cohort
from safepassage.store.connections import Connections
from safepassage.store.digest import EMPTY_DIGEST, gallery_digest, row_digests, xor_digests
from safepassage.store.errors import (
    DuplicateReference,
    GalleryNotFound,
    InvalidTemplate,
    ReferenceNotFound,
    StoreCorrupted,
    TemplateIntegrityError,
)
from safepassage.store.galleries import gallery_row
from safepassage.store.records import StoredTemplate
from safepassage.store.row_ids import allocate_ids
from safepassage.store.sealing import TemplateSealer
from safepassage.store.vectors import check_batch

__all__ = ["TemplateIds", "Templates"]

_log = logging.getLogger(__name__)

_MAX_ID = 2**63 - 1


# Template ids as the matcher has them: a list, or an int64 array from the index.
TemplateIds: TypeAlias = Sequence[int] | npt.NDArray[np.integer[Any]]


def _valid_ids(template_ids: TemplateIds) -> list[int]:
    ids = {int(tid) for tid in template_ids}
    return sorted(tid for tid in ids if 0 < tid <= _MAX_ID)


class Templates:
    """The templates table, one transaction per method (an iteration reads one snapshot)."""

    def __init__(self, connections: Connections, sealer: TemplateSealer) -> None:
        self._db = connections
        self._sealer = sealer

    def count(self, gallery_id: str) -> int:
        """Number of templates in the gallery (quarantined ones aside). Raises GalleryNotFound."""
        with self._db.read("read a gallery state") as conn:
            return gallery_row(conn, gallery_id).size

    def _fail_early(self, gallery_id: str) -> None:
        with self._db.read("read a gallery") as conn:
            gallery_row(conn, gallery_id)

    def insert(self, gallery_id: str, items: Sequence[tuple[str, npt.ArrayLike]]) -> list[int]:
        """Seal and insert a batch in one transaction: all of it or none.

        Returns the new template ids, in item order; they are never reused.
        Raises GalleryNotFound, InvalidTemplate, or DuplicateReference if a
        reference id is already in the gallery or repeats within the batch.
        An empty batch writes nothing and leaves the generation unchanged.
        """
        batch = check_batch(gallery_id, items)
        with self._db.write("insert templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            matrix = batch.matrix(gallery.record.dimension)
            if not len(batch):
                return []
            for marks, chunk in in_chunks(batch.reference_ids):
                taken = conn.execute(
                    "SELECT reference_id, quarantined FROM templates"
                    f" WHERE gallery_pk = ? AND reference_id IN ({marks}) LIMIT 1",
                    (gallery.pk, *chunk),
                ).fetchone()
                if taken is not None:
                    aside = " (quarantined: delete it first)" if taken[1] is not None else ""
                    raise DuplicateReference(
                        f"reference {taken[0]!r} already exists in gallery {gallery_id!r}{aside}"
                    )
            ids = allocate_ids(conn, "templates", len(batch))
            sealed = self._sealer.seal_batch(matrix, gallery_id=gallery_id, template_ids=ids)
            digests = row_digests(self._sealer.digest_key, ids, matrix)
            now = time.time()
            columns = zip(ids, batch.reference_ids, sealed, digests, strict=True)
            conn.executemany(
                "INSERT INTO templates (template_id, gallery_pk, reference_id, sealed,"
                " row_digest, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(tid, gallery.pk, ref, blob, dig, now) for tid, ref, blob, dig in columns],
            )
            conn.execute(
                "UPDATE galleries SET size = size + ?, generation = generation + 1, digest = ?"
                " WHERE gallery_pk = ?",
                (len(ids), xor_digests(digests, gallery.digest), gallery.pk),
            )
        _log.debug("gallery %r: inserted %d templates", gallery_id, len(ids))
        return ids

    def rewrite(
        self,
        gallery_id: str,
        template_ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        protection_version: int | None,
        rekey: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None,
    ) -> None:
        """Replace every template's vector (same ids and references) and the gallery's
        protection version in one transaction: a re-keying is all done or not at all.
        ``rekey`` rewrites the gallery's other protected vectors in it too: its subjects' captures
        (safepassage.store.captures) and its background cohort (safepassage.store.cohort).

        ``template_ids`` must be exactly the gallery's live rows (StoreCorrupted
        otherwise); quarantined rows are left as they are.
        """
        ids = [int(i) for i in template_ids]
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._db.write("rewrite templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            if matrix.shape != (len(ids), gallery.record.dimension):
                raise InvalidTemplate(f"expected {len(ids)} vectors of {gallery.record.dimension} values")
            stored = [
                int(row[0])
                for row in conn.execute(
                    "SELECT template_id FROM templates WHERE gallery_pk = ? AND quarantined IS NULL"
                    " ORDER BY template_id",
                    (gallery.pk,),
                )
            ]
            if stored != sorted(ids) or len(set(ids)) != len(ids):
                raise StoreCorrupted(f"gallery {gallery_id!r}: a rewrite must cover exactly its templates")
            sealed = self._sealer.seal_batch(matrix, gallery_id=gallery_id, template_ids=ids)
            digests = row_digests(self._sealer.digest_key, ids, matrix)
            conn.executemany(
                "UPDATE templates SET sealed = ?, row_digest = ? WHERE template_id = ?",
                [(blob, dig, tid) for tid, blob, dig in zip(ids, sealed, digests, strict=True)],
            )
            if rekey is not None:
                rekey_captures(conn, self._sealer, gallery, rekey)
                rekey_cohort(conn, self._sealer, gallery, rekey)
            conn.execute(
                "UPDATE galleries SET generation = generation + 1, digest = ?, protection_version = ?"
                " WHERE gallery_pk = ?",
                (xor_digests(digests, EMPTY_DIGEST), protection_version, gallery.pk),
            )
        # The old vectors' frames leave the WAL (secure_delete zeroes their pages).
        self._db.checkpoint()
        _log.info("gallery %r: rewrote %d templates", gallery_id, len(ids))

    def delete(self, gallery_id: str, reference_id: str) -> int:
        """Erase one subject: its template, quarantined or not, and its captures; returns the template id.

        Raises GalleryNotFound, ReferenceNotFound.
        """
        with self._db.write("delete a template") as conn:
            gallery = gallery_row(conn, gallery_id)
            row = conn.execute(
                "SELECT template_id, row_digest, quarantined FROM templates"
                " WHERE gallery_pk = ? AND reference_id = ?",
                (gallery.pk, reference_id),
            ).fetchone()
            if row is None:
                raise ReferenceNotFound(f"reference {reference_id!r} is not in gallery {gallery_id!r}")
            template_id = int(row[0])
            conn.execute("DELETE FROM templates WHERE template_id = ?", (template_id,))
            delete_subject_captures(conn, gallery.pk, reference_id)
            if row[2] is None:  # a quarantined row already left the gallery's state
                conn.execute(
                    "UPDATE galleries SET size = size - 1, generation = generation + 1, digest = ?"
                    " WHERE gallery_pk = ?",
                    (xor_digests([bytes(row[1])], gallery.digest), gallery.pk),
                )
        self._db.checkpoint()
        _log.info("gallery %r: erased template %d", gallery_id, template_id)
        return template_id

    def get(self, gallery_id: str, reference_id: str) -> tuple[int, npt.NDArray[np.float32]]:
        """(template id, decrypted vector) of a live row. Raises GalleryNotFound, ReferenceNotFound
        (also for a quarantined row), TemplateIntegrityError."""
        with self._db.read("read a template") as conn:
            row = conn.execute(
                "SELECT g.dimension, t.template_id, t.sealed, t.quarantined FROM galleries AS g"
                " LEFT JOIN templates AS t"
                " ON t.gallery_pk = g.gallery_pk AND t.reference_id = ?"
                " WHERE g.gallery_id = ?",
                (reference_id, gallery_id),
            ).fetchone()
        if row is None:
            raise GalleryNotFound(f"gallery {gallery_id!r} does not exist")
        if row[1] is None:
            raise ReferenceNotFound(f"reference {reference_id!r} is not in gallery {gallery_id!r}")
        if row[3] is not None:
            raise ReferenceNotFound(
                f"reference {reference_id!r} of gallery {gallery_id!r} is quarantined ({row[3]}):"
                " it is not searched; delete it and enrol it again"
            )
        template_id = int(row[1])
        vector = self._sealer.open(
            row[2], gallery_id=gallery_id, template_id=template_id, dimension=int(row[0])
        )
        return template_id, vector

    def reference_ids(self, gallery_id: str, template_ids: TemplateIds) -> dict[int, str]:
        """Map template ids to reference ids; ids not in the gallery are absent."""
        wanted = _valid_ids(template_ids)
        found: dict[int, str] = {}
        with self._db.read("map template ids") as conn:
            pk = gallery_row(conn, gallery_id).pk
            for marks, chunk in in_chunks(wanted):
                found.update(
                    conn.execute(
                        # Unary + keeps SQLite on the primary key: with the
                        # (gallery_pk, reference_id) index it scans the gallery.
                        "SELECT template_id, reference_id FROM templates"
                        f" WHERE +gallery_pk = ? AND template_id IN ({marks})",
                        (pk, *chunk),
                    ).fetchall()
                )
        return found

    def template_ids(self, gallery_id: str, reference_ids: Sequence[str]) -> dict[str, int]:
        """Map reference ids to template ids; references not in the gallery are absent."""
        wanted = sorted({str(ref) for ref in reference_ids})
        found: dict[str, int] = {}
        with self._db.read("map reference ids") as conn:
            pk = gallery_row(conn, gallery_id).pk
            for marks, chunk in in_chunks(wanted):
                found.update(
                    conn.execute(
                        "SELECT reference_id, template_id FROM templates"
                        f" WHERE gallery_pk = ? AND reference_id IN ({marks})",
                        (pk, *chunk),
                    ).fetchall()
                )
        return found

    def listing(
        self, gallery_id: str, *, after_template_id: int = 0, limit: int = 1000
    ) -> list[StoredTemplate]:
        """One page of (template id, reference id) in id order, for paging through a gallery."""
        with self._db.read("list templates") as conn:
            pk = gallery_row(conn, gallery_id).pk
            rows = conn.execute(
                "SELECT template_id, reference_id FROM templates"
                " WHERE gallery_pk = ? AND template_id > ? ORDER BY template_id LIMIT ?",
                (pk, int(after_template_id), max(0, int(limit))),
            ).fetchall()
        return [StoredTemplate(int(tid), str(ref)) for tid, ref in rows]

    def iterate(
        self,
        gallery_id: str,
        batch_size: int = 4096,
        *,
        verify: bool = True,
        unreadable: list[int] | None = None,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Yield (template ids int64 (n,), vectors float32 (n, d)) of the live rows in template-id order.

        Reads one snapshot: writes committed after the first batch is read are
        not seen. With ``verify`` the decrypted contents are checked against
        the snapshot's size and digest at the end (StoreCorrupted if they
        differ). Raises GalleryNotFound now; TemplateIntegrityError while
        iterating, unless ``unreadable`` is given: then the ids of rows that
        fail to open are appended to it and the rows skipped (verification
        counts their stored row digests, so the rest is still checked).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._fail_early(gallery_id)  # fail now, not at the first next()
        return self._iterate(gallery_id, batch_size, verify, unreadable)

    def _open_rows(
        self, gallery_id: str, rows: list[Any], dimension: int, unreadable: list[int] | None
    ) -> tuple[list[int], npt.NDArray[np.float32], list[bytes]]:
        """(ids, vectors) of the rows that open, and the stored digests of those that do not."""
        ids = [int(row[0]) for row in rows]
        try:
            return ids, self._open_batch(gallery_id, rows, dimension), []
        except TemplateIntegrityError:
            if unreadable is None:
                raise
        # Only after a failure: one at a time, to tell which rows.
        good: list[int] = []
        vectors: list[npt.NDArray[np.float32]] = []
        failed: list[bytes] = []
        for row in rows:
            try:
                vectors.append(self._open_batch(gallery_id, [row], dimension)[0])
                good.append(int(row[0]))
            except TemplateIntegrityError:
                unreadable.append(int(row[0]))
                failed.append(bytes(row[2]))
        matrix = np.stack(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
        return good, matrix, failed

    def _open_batch(self, gallery_id: str, rows: list[Any], dimension: int) -> npt.NDArray[np.float32]:
        return self._sealer.open_batch(
            [row[1] for row in rows],
            gallery_id=gallery_id,
            template_ids=[int(row[0]) for row in rows],
            dimension=dimension,
        )

    def _iterate(
        self, gallery_id: str, batch_size: int, verify: bool, unreadable: list[int] | None
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        with self._db.read("iterate templates") as conn:
            gallery = gallery_row(conn, gallery_id)
            dimension = gallery.record.dimension
            digest, seen, last = EMPTY_DIGEST, 0, 0
            while True:
                rows = conn.execute(
                    "SELECT template_id, sealed, row_digest FROM templates"
                    " WHERE gallery_pk = ? AND template_id > ? AND quarantined IS NULL"
                    " ORDER BY template_id LIMIT ?",
                    (gallery.pk, last, batch_size),
                ).fetchall()
                if not rows:
                    break
                ids, vectors, failed = self._open_rows(gallery_id, rows, dimension, unreadable)
                id_array = np.asarray(ids, dtype=np.int64)
                if verify:
                    digest = gallery_digest(self._sealer, id_array, vectors, start=digest)
                    digest = xor_digests(failed, digest) if failed else digest
                seen += len(rows)
                last = int(rows[-1][0])
                if ids:
                    yield id_array, vectors
            if verify and (seen != gallery.size or digest != gallery.digest):
                same = "equal" if digest == gallery.digest else "differs"
                raise StoreCorrupted(
                    f"gallery {gallery_id!r}: {seen} stored templates do not match its state "
                    f"(size {gallery.size}, digest {same})"
                )
