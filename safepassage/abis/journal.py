"""The job journal: every request the broker delivered, and the answer it got, on disk.

With the broker this makes each request answered exactly once across crashes and restarts:

1. A delivered message is written here as RECEIVED (fsynced) before any work starts: the pending
   jobs MOSIP asks about are these rows, so ``pendingJobs`` counts what really waits.
2. The work's answer is written here (ANSWERED) before it is sent.
3. The answer is sent and the request acknowledged in ONE broker transaction.

A crash before 3 leaves the message unacknowledged: the broker delivers it again, and the answer
stored in 2 is sent (no insert is repeated, no search runs twice). A crash after 3 loses nothing:
the broker has the answer and forgot the request. A request id MOSIP sends again later is
answered with the stored answer. Rows hold request ids, operations and answers (reference ids
and scores, never biometrics) and are purged after the retention.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from safepassage.abis.errors import AbisError
from safepassage.core.errors import DataIntegrityError, Unavailable
from safepassage.core.sqlite import Database, SqliteErrors

__all__ = ["Job", "JobJournal", "JobState"]


class JournalUnavailable(AbisError, Unavailable):
    """The journal cannot be read or written now."""


class JournalCorrupted(AbisError, DataIntegrityError):
    """The journal file is damaged."""


_ERRORS = SqliteErrors(JournalUnavailable, JournalCorrupted)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_key TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('RECEIVED', 'ANSWERED')),
    -- The reference an insert or delete is about to write: a redelivery after a crash then knows
    -- that the template it finds (or misses) is its own doing.
    writes TEXT,
    answer BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""


class JobState(enum.StrEnum):
    RECEIVED = "RECEIVED"
    ANSWERED = "ANSWERED"


@dataclass(frozen=True)
class Job:
    key: str
    operation: str
    state: JobState
    answer: bytes | None
    writes: str | None = None  # the reference id this job's insert or delete was writing


def _prepare(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


class JobJournal:
    """One SQLite file (private to the adapter process); every write fsynced before it returns."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    def open(cls, path: Path) -> JobJournal:
        return cls(Database.open(path, _ERRORS, _prepare, action="open the ABIS job journal"))

    def close(self) -> None:
        self._db.close()

    def receive(self, key: str, operation: str) -> Job:
        """Record a delivered request (RECEIVED) unless the key is known; the job as it now stands."""
        with self._db.write("record an ABIS job") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_key, operation, received_ms, state) VALUES (?, ?, ?, ?)",
                (key, operation, int(time.time() * 1000), JobState.RECEIVED.value),
            )
            row = conn.execute(
                "SELECT operation, state, answer, writes FROM jobs WHERE job_key = ?", (key,)
            ).fetchone()
        return Job(key, str(row[0]), JobState(row[1]), None if row[2] is None else bytes(row[2]), row[3])

    def writing(self, key: str, reference_id: str) -> None:
        """Note, before the store is written, that this job inserts or deletes ``reference_id``."""
        with self._db.write("record an ABIS write") as conn:
            conn.execute("UPDATE jobs SET writes = ? WHERE job_key = ?", (reference_id, key))

    def answered(self, key: str, answer: bytes) -> None:
        """Keep the answer (ANSWERED) before it is sent."""
        with self._db.write("record an ABIS answer") as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, answer = ? WHERE job_key = ?",
                (JobState.ANSWERED.value, answer, key),
            )

    def pending(self) -> int:
        """Requests received and not yet answered."""
        return self._db.count("count pending ABIS jobs", "SELECT count(*) FROM jobs WHERE state = 'RECEIVED'")

    def answers(self) -> int:
        return self._db.count("count ABIS answers", "SELECT count(*) FROM jobs WHERE state = 'ANSWERED'")

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Forget answered jobs received longer than the retention ago."""
        return self._db.purge(
            "answered ABIS jobs",
            "DELETE FROM jobs WHERE state = 'ANSWERED' AND received_ms < CAST(? * 1000 AS INTEGER)",
            retention_s,
            now,
        )
