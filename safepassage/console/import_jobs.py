"""Bulk imports that run after the page that started them has answered, and what each has done so far.

An administrator's import of a thousand photos takes minutes; a page that answers only when the
service is done shows nothing meanwhile, and a browser or a proxy may give up on it. So the import
runs on a thread of its own, and its page (which refreshes itself, with no script) says how many
photos have been sent to the service so far, then the per-file report.

A job is visible only to the certificate that started it (its SHA-256), under an unguessable id
(128 random bits); another person asking for it is told there is no such import. Jobs live in
memory: the console keeps no data, so a restart forgets them (the service's transparency log still
has each import's entry). At most ``max_running`` run at once, and one per person; a finished job
is kept ``keep_s`` for its page, then forgotten, and at most ``max_kept`` jobs are held (the oldest
report goes first). The photos are held only while their job runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from safepassage.console.refusals import NothingThere, NotPossibleNow, TooMuch
from safepassage.core.errors import SafePassageError

__all__ = ["ImportJobs", "JobState"]

log = logging.getLogger(__name__)

R = TypeVar("R")
Work = Callable[[Callable[[int], None]], R]


@dataclass(frozen=True)
class JobState(Generic[R]):
    """A job as its page shows it: sent so far of the total, then its report or the refusal it met."""

    job_id: str
    gallery_id: str
    total: int
    sent: int
    started_at: float
    finished_at: float | None
    report: R | None
    refusal: SafePassageError | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.finished_at is None


@dataclass
class _Job(Generic[R]):
    owner: str
    state: JobState[R]


class ImportJobs(Generic[R]):
    def __init__(
        self,
        max_running: int = 4,
        keep_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        max_kept: int = 256,
    ) -> None:
        self._max_running = max_running
        self._max_kept = max_kept
        self._keep_s = keep_s
        self._clock = clock
        self._jobs: dict[str, _Job[R]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _owner(certificate: bytes) -> str:
        return hashlib.sha256(certificate).hexdigest()

    def start(self, certificate: bytes, gallery_id: str, total: int, work: Work[R]) -> str:
        """Run ``work`` (given a callback for the count sent so far) on a thread; the new job's id."""
        owner = self._owner(certificate)
        job_id = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            self._forget_finished(now)
            running = [job for job in self._jobs.values() if job.state.running]
            if any(job.owner == owner for job in running):
                raise TooMuch("an import of yours is still running: wait for its report, then start the next")
            if len(running) >= self._max_running:
                raise TooMuch(f"{len(running)} imports are running: try again when one has finished")
            finished = sorted(
                (job.state.finished_at or 0.0, key)
                for key, job in self._jobs.items()
                if not job.state.running
            )
            for _, key in finished[: max(0, len(self._jobs) + 1 - self._max_kept)]:
                del self._jobs[key]  # the oldest reports go first: the registry stays bounded
            state: JobState[R] = JobState(job_id, gallery_id, total, 0, now, None, None)
            self._jobs[job_id] = _Job(owner, state)
        thread = threading.Thread(
            target=self._run, args=(job_id, work), name=f"import-{job_id[:6]}", daemon=True
        )
        thread.start()
        log.info("import %s started: %d files", job_id[:6], total)
        return job_id

    def get(self, certificate: bytes, job_id: str) -> JobState[R]:
        """The job as it stands; NothingThere when it is unknown, forgotten or someone else's."""
        owner = self._owner(certificate)
        with self._lock:
            self._forget_finished(self._clock())
            job = self._jobs.get(job_id)
            if job is None or not secrets.compare_digest(job.owner, owner):
                raise NothingThere("there is no such import (imports are forgotten an hour after they end)")
            return job.state

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs[job_id]
            job.state = dataclasses.replace(job.state, **changes)

    def _run(self, job_id: str, work: Work[R]) -> None:
        try:
            report = work(lambda sent: self._update(job_id, sent=sent))
        except SafePassageError as refusal:  # the service's or the console's refusal, shown on the page
            log.info("import %s refused: %s", job_id[:6], type(refusal).__name__)
            self._update(job_id, finished_at=self._clock(), refusal=refusal)
        except Exception:
            log.exception("import %s failed", job_id[:6])
            failed = NotPossibleNow("the import failed: the console's log says why; try again")
            self._update(job_id, finished_at=self._clock(), refusal=failed)
        else:
            self._update(job_id, finished_at=self._clock(), report=report)
            log.info("import %s finished", job_id[:6])

    def _forget_finished(self, now: float) -> None:
        old = [
            job_id
            for job_id, job in self._jobs.items()
            if job.state.finished_at is not None and now - job.state.finished_at > self._keep_s
        ]
        for job_id in old:
            del self._jobs[job_id]
