"""Referral rows of the record vault: organisation, channel and times in clear, the rest sealed.

What a referral says (who raised it, in which flow) is sealed under the
record's data key by safepassage.enrolment.referrals; here it is an opaque blob that
dies with the record (foreign key cascade at erasure). The organisation is the
record's enrolling organisation: only its caseworkers list the referral.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from safepassage.enrolment.errors import RecordNotFound
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["ReferralRows", "StoredReferral"]

_COLUMNS = "referral_id, record_id, organisation, channel, raised_at, sealed, acknowledged_at"


@dataclass(frozen=True)
class StoredReferral:
    referral_id: int
    record_id: str
    organisation: str  # "" for a version-1 row whose record had no organisation
    channel: str
    raised_at: float
    sealed: bytes
    acknowledged_at: float | None


def _referral(row: tuple[Any, ...]) -> StoredReferral:
    return StoredReferral(
        int(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]), bytes(row[5]), row[6]
    )


class ReferralRows:
    """The referrals table."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def add(self, record_id: str, organisation: str, channel: str, raised_at: float, sealed: bytes) -> int:
        """Store a referral; its id (ascending). RecordNotFound / RecordErased for no live record."""
        with self._file.write("raise a referral") as conn:
            self._file.require_record(conn, record_id)
            cursor = conn.execute(
                "INSERT INTO referrals (record_id, organisation, channel, raised_at, sealed)"
                " VALUES (?, ?, ?, ?, ?)",
                (record_id, organisation, channel, raised_at, sealed),
            )
        return int(cursor.lastrowid or 0)

    def for_organisation(
        self, organisation: str, channels: Iterable[str] | None, include_acknowledged: bool
    ) -> list[StoredReferral]:
        """The organisation's referrals (on `channels` only, unless None), oldest first."""
        wanted = None if channels is None else set(channels)
        with self._file.read("read referrals") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM referrals"
                " WHERE organisation = ? AND (? OR acknowledged_at IS NULL) ORDER BY referral_id",
                (organisation, int(include_acknowledged)),
            ).fetchall()
        return [_referral(r) for r in rows if wanted is None or r[3] in wanted]

    def get(self, referral_id: int) -> StoredReferral:
        with self._file.read("read a referral") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no referral {referral_id}")
        return _referral(row)

    def acknowledge(self, referral_id: int, now: float) -> StoredReferral:
        """Mark it read (the first acknowledgement's time is kept)."""
        with self._file.write("acknowledge a referral") as conn:
            conn.execute(
                "UPDATE referrals SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE referral_id = ?",
                (now, referral_id),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no referral {referral_id}")
        return _referral(row)
