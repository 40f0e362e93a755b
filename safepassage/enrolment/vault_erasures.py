"""Erasure in the record vault: the journal of erasures under way, the deletion, the tombstones.

An erasure takes several steps outside this file (templates dropped from
memory, KEK rotated, old versions destroyed). A journal row written first and
removed last lets start-up finish an erasure a crash interrupted: whatever
state the record is in, the service can run the remaining steps again.

The deletion itself is one transaction: the record's row (sealed parts), its
wrapped data key, consents and referrals (foreign keys cascade) go; its
credentials are retired and unlinked; a tombstone keeps the id (never reused),
the time, who asked, and the signed receipt. The WAL is then truncated so the
old pages leave it too (``secure_delete`` zeroes them in the main file).
"""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.enrolment.credential_registry import unlink_credentials
from safepassage.enrolment.errors import RecordNotFound
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["Erasures", "PendingErasure", "Tombstone"]


@dataclass(frozen=True)
class Tombstone:
    record_id: str
    erased_at: float
    requested_by: str
    receipt_sha256: str
    receipt: str = ""  # the signed erasure receipt ("" for tombstones from schema version 1)


@dataclass(frozen=True)
class PendingErasure:
    """A journaled erasure not yet finished."""

    record_id: str
    requested_by: str
    started_at: float


class Erasures:
    """The pending_erasures and tombstones tables, and the deletion that links them."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def begin(self, record_id: str, requested_by: str, now: float) -> None:
        """Journal the erasure before its first step; a second call keeps the first row.

        RecordNotFound for an id that is neither live nor tombstoned. A tombstoned
        id is journaled all the same: the point is to finish the shredding.
        """
        with self._file.write("journal an erasure") as conn:
            known = conn.execute(
                "SELECT 1 FROM records WHERE record_id = ?"
                " UNION ALL SELECT 1 FROM tombstones WHERE record_id = ?",
                (record_id, record_id),
            ).fetchone()
            if known is None:
                raise RecordNotFound(f"no record {record_id}")
            conn.execute(
                "INSERT OR IGNORE INTO pending_erasures (record_id, requested_by, started_at)"
                " VALUES (?, ?, ?)",
                (record_id, requested_by, now),
            )

    def pending(self) -> list[PendingErasure]:
        """Erasures begun and not ended, oldest first."""
        with self._file.read("read the erasure journal") as conn:
            rows = conn.execute(
                "SELECT record_id, requested_by, started_at FROM pending_erasures"
                " ORDER BY started_at, record_id"
            ).fetchall()
        return [PendingErasure(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    def end(self, record_id: str) -> None:
        """Remove the journal row once every step is done (no row: nothing to do)."""
        with self._file.write("close an erasure") as conn:
            conn.execute("DELETE FROM pending_erasures WHERE record_id = ?", (record_id,))

    def erase(self, tombstone: Tombstone) -> None:
        """Delete the record, its consents and referrals, unlink its credentials; leave the tombstone.

        RecordErased if already erased, RecordNotFound if never there. Then the WAL is purged.
        """
        with self._file.write("erase a record") as conn:
            record_id = tombstone.record_id
            if conn.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone() is None:
                self._file.raise_missing(conn, record_id)
            unlink_credentials(conn, record_id, tombstone.erased_at)
            conn.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
            conn.execute(
                "INSERT INTO tombstones (record_id, erased_at, requested_by, receipt_sha256, receipt)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    record_id,
                    tombstone.erased_at,
                    tombstone.requested_by,
                    tombstone.receipt_sha256,
                    tombstone.receipt,
                ),
            )
        self._file.purge_journal()

    def tombstone(self, record_id: str) -> Tombstone | None:
        with self._file.read("read a tombstone") as conn:
            row = conn.execute(
                "SELECT record_id, erased_at, requested_by, receipt_sha256, receipt"
                " FROM tombstones WHERE record_id = ?",
                (record_id,),
            ).fetchone()
        if row is None:
            return None
        return Tombstone(str(row[0]), float(row[1]), str(row[2]), str(row[3]), str(row[4]))
