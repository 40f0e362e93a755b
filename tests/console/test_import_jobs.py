"""The console's background imports (import_jobs.py): progress as it happens, the owner alone sees a
job, one running import per person and a cap on all, refusals kept for the page, finished jobs
forgotten after their time. The work here is a function that waits on events, so each step is seen
whatever the machine's pace; the browser test runs a real import (test_console_admin.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from safepassage.console.import_jobs import ImportJobs, JobState
from safepassage.console.refusals import NothingThere, RequestRefused, TooMuch

ALICE, BOB, CAROL = b"alice-certificate", b"bob-certificate", b"carol-certificate"


class Steps:
    """Work that reports each step it is let through, then returns its report."""

    def __init__(self, total: int, fail: Exception | None = None) -> None:
        self.total = total
        self.fail = fail
        self.go = [threading.Event() for _ in range(total + 1)]
        self.reported = [threading.Event() for _ in range(total + 1)]

    def __call__(self, progress: Callable[[int], None]) -> str:
        for sent in range(self.total + 1):
            self.go[sent].wait(10)
            if sent == self.total and self.fail is not None:
                raise self.fail
            progress(sent)
            self.reported[sent].set()
        return f"report of {self.total}"

    def step(self, sent: int) -> None:
        self.go[sent].set()
        assert self.reported[sent].wait(10) or self.fail is not None


def finished(jobs: ImportJobs[str], certificate: bytes, job_id: str) -> JobState[str]:
    for _ in range(1000):
        state = jobs.get(certificate, job_id)
        if not state.running:
            return state
        time.sleep(0.01)
    raise AssertionError("the job never finished")


def test_progress_is_seen_as_it_happens_and_then_the_report() -> None:
    jobs: ImportJobs[str] = ImportJobs()
    work = Steps(3)
    job_id = jobs.start(ALICE, "watchlist", 3, work)
    state = jobs.get(ALICE, job_id)
    assert state.running and state.sent == 0 and state.total == 3 and state.gallery_id == "watchlist"
    work.step(0)
    work.step(1)
    assert jobs.get(ALICE, job_id).sent == 1
    work.step(2)
    work.step(3)
    done = finished(jobs, ALICE, job_id)
    assert done.sent == 3 and done.report == "report of 3" and done.refusal is None


def test_only_the_person_who_started_it_sees_it() -> None:
    jobs: ImportJobs[str] = ImportJobs()
    work = Steps(1)
    job_id = jobs.start(ALICE, "watchlist", 1, work)
    with pytest.raises(NothingThere):
        jobs.get(BOB, job_id)
    with pytest.raises(NothingThere):
        jobs.get(ALICE, job_id[:-1] + ("A" if job_id[-1] != "A" else "B"))
    work.step(0)
    work.step(1)
    finished(jobs, ALICE, job_id)


def test_one_running_import_a_person_and_a_cap_on_all() -> None:
    jobs: ImportJobs[str] = ImportJobs(max_running=2)
    first, second = Steps(1), Steps(1)
    job_id = jobs.start(ALICE, "watchlist", 1, first)
    with pytest.raises(TooMuch, match="still running"):
        jobs.start(ALICE, "watchlist", 1, Steps(1))
    other = jobs.start(BOB, "watchlist", 1, second)
    with pytest.raises(TooMuch, match="imports are running"):
        jobs.start(CAROL, "watchlist", 1, Steps(1))
    for work in (first, second):
        work.step(0)
        work.step(1)
    finished(jobs, ALICE, job_id)
    finished(jobs, BOB, other)
    third = Steps(0)
    room_again = jobs.start(CAROL, "watchlist", 0, third)
    third.step(0)
    finished(jobs, CAROL, room_again)


def test_a_refusal_is_kept_for_the_page() -> None:
    jobs: ImportJobs[str] = ImportJobs()
    work = Steps(1, fail=RequestRefused("the gallery was deleted meanwhile"))
    job_id = jobs.start(ALICE, "watchlist", 1, work)
    work.step(0)
    work.go[1].set()
    done = finished(jobs, ALICE, job_id)
    assert done.report is None and isinstance(done.refusal, RequestRefused)
    assert "deleted" in str(done.refusal)


def test_a_finished_job_is_forgotten_after_its_time() -> None:
    now = [1000.0]
    jobs: ImportJobs[str] = ImportJobs(keep_s=60, clock=lambda: now[0])
    work = Steps(0)
    job_id = jobs.start(ALICE, "watchlist", 0, work)
    work.step(0)
    finished(jobs, ALICE, job_id)
    now[0] += 59
    assert jobs.get(ALICE, job_id).report == "report of 0"
    now[0] += 2
    with pytest.raises(NothingThere):
        jobs.get(ALICE, job_id)


def test_the_registry_keeps_at_most_its_bound_dropping_the_oldest_report() -> None:
    jobs: ImportJobs[str] = ImportJobs(max_kept=3)
    ids = []
    for _ in range(5):
        work = Steps(0)
        ids.append(jobs.start(ALICE, "watchlist", 0, work))
        work.step(0)
        finished(jobs, ALICE, ids[-1])
    for old in ids[:2]:
        with pytest.raises(NothingThere):
            jobs.get(ALICE, old)
    assert [jobs.get(ALICE, job_id).report for job_id in ids[2:]] == ["report of 0"] * 3
