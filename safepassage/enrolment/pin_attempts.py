"""PIN attempts per record: reserved before the hash is checked, locked out for ever longer.

A PIN hash takes a while to check, so counting a failure *after* the check
lets an attacker run many checks at once, all starting from the same count.
Here an attempt is reserved first, in one write transaction: refused while the
record is locked or while ``max_failures`` attempts are already counted, else
counted. So at most ``max_failures`` PINs are ever evaluated before a lockout,
however many requests run at once. The caller then reports the outcome:

* wrong (:meth:`PinAttempts.failed`): already counted; at ``max_failures`` the
  record locks for ``lock_s * 2**(lockouts - 1)`` (capped at 30 days, or
  ``lock_s`` if that is longer) and the count starts again;
* right (:meth:`PinAttempts.passed`): count, lockouts and lock are cleared.

An attempt whose check never reports (a crash mid-check) stays counted until
the next lockout or success: it cost the attacker an attempt, as it should.
"""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.enrolment.errors import PinLocked
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["MAX_LOCK_S", "PinAttempts", "PinLockout", "lock_seconds"]

# The longest one lockout lasts, so the doubling stays finite (unless lock_s itself is longer).
MAX_LOCK_S = 30 * 24 * 3600.0
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class PinLockout:
    """A lockout that a wrong PIN just started: the how-manieth in a row, and until when."""

    lockouts: int
    locked_until: float


def lock_seconds(lock_s: float, lockouts: int) -> float:
    """How long the `lockouts`-th lockout in a row lasts: lock_s, then twice as long each time."""
    doubling = min(max(lockouts - 1, 0), _MAX_DOUBLINGS)
    return min(lock_s * 2.0**doubling, max(lock_s, MAX_LOCK_S))


class PinAttempts:
    """The pin_failures / pin_lockouts / pin_locked_until columns of the records table."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def locked_until(self, record_id: str) -> float:
        with self._file.read("read PIN state") as conn:
            row = conn.execute(
                "SELECT pin_locked_until FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:
                self._file.raise_missing(conn, record_id)
        return float(row[0])

    def reserve(self, record_id: str, now: float, max_failures: int) -> None:
        """Count one attempt before it is checked; PinLocked if locked or `max_failures` are counted."""
        with self._file.write("reserve a PIN attempt") as conn:
            row = conn.execute(
                "SELECT pin_failures, pin_locked_until FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:
                self._file.raise_missing(conn, record_id)
            failures, locked_until = int(row[0]), float(row[1])
            if locked_until > now:
                raise PinLocked(f"PIN checks for this record are locked for {int(locked_until - now) + 1} s")
            if failures >= max_failures:
                # Attempts reserved by concurrent requests are still being checked.
                raise PinLocked("too many PIN attempts for this record at once; try again shortly")
            conn.execute(
                "UPDATE records SET pin_failures = pin_failures + 1 WHERE record_id = ?", (record_id,)
            )

    def failed(self, record_id: str, now: float, max_failures: int, lock_s: float) -> PinLockout | None:
        """The reserved attempt was wrong; the lockout it starts, if it is the `max_failures`-th."""
        with self._file.write("count a wrong PIN") as conn:
            row = conn.execute(
                "SELECT pin_failures, pin_lockouts FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:  # erased while its PIN was being checked
                self._file.raise_missing(conn, record_id)
            failures, lockouts = int(row[0]), int(row[1])
            if failures < max_failures:
                return None
            lockouts += 1
            until = now + lock_seconds(lock_s, lockouts)
            conn.execute(
                "UPDATE records SET pin_failures = 0, pin_lockouts = ?, pin_locked_until = ?"
                " WHERE record_id = ?",
                (lockouts, until, record_id),
            )
        return PinLockout(lockouts, until)

    def passed(self, record_id: str) -> None:
        """The right PIN: forget the failures, the lockouts in a row and any lock."""
        with self._file.write("reset PIN failures") as conn:
            updated = conn.execute(
                "UPDATE records SET pin_failures = 0, pin_lockouts = 0, pin_locked_until = 0"
                " WHERE record_id = ?",
                (record_id,),
            ).rowcount
            if updated == 0:
                self._file.raise_missing(conn, record_id)
