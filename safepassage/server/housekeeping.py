"""The service's periodic jobs: retention purges, tree heads and index snapshots, each on a thread of its own.

Retention: CCTV probes kept for review and answers given on identify streams are erased once older
than ``retention.*_hours`` (a later replay of a stream query is searched afresh); each purge that
erased something leaves an entry in the transparency log. Every job runs every interval until the
service's stop event is set; a job that fails is logged and tried again at its next interval, since
a failed background job must not stop the service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from safepassage import store
from safepassage.audit import LogEvent, TransparencyLog
from safepassage.matcher import Matcher
from safepassage.server.config import Config, RetentionConfig

__all__ = ["PeriodicJob", "Retention", "periodic_jobs", "start_periodic"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """A job and how often it runs; its name names its thread and its failures in the log."""

    name: str
    interval_s: float
    run: Callable[[], object]


@dataclass(frozen=True)
class Retention:
    """Erases what the retention settings say is kept no longer, and logs what it erased."""

    settings: RetentionConfig
    kept_probes: store.ProbeStore
    stream_replies: store.ReplyLedger
    transparency_log: TransparencyLog

    def purge_probes(self) -> int:
        """Erase CCTV probes older than the retention that no officer confirmed."""
        erased = self.kept_probes.purge(self.settings.camera_probe_hours * 3600)
        return self._record_purge("probes_erased", erased)

    def purge_replies(self) -> int:
        """Erase identify-stream answers older than their retention; a later replay is searched afresh."""
        erased = self.stream_replies.purge(self.settings.stream_replies_hours * 3600)
        return self._record_purge("stream_replies_erased", erased)

    def _record_purge(self, what: str, erased: int) -> int:
        if erased:
            self.transparency_log.append(
                LogEvent.now("system", "retention.purge", outcome="OK", details={what: str(erased)})
            )
        return erased


def periodic_jobs(
    config: Config, retention: Retention, matcher: Matcher, transparency_log: TransparencyLog
) -> list[PeriodicJob]:
    """The jobs a running service repeats: purges, tree heads, and index snapshots when configured."""
    jobs = [
        PeriodicJob("retention purge", config.retention.purge_interval_s, retention.purge_probes),
        PeriodicJob("reply purge", config.retention.purge_interval_s, retention.purge_replies),
        PeriodicJob("tree head", config.audit.tree_head_interval_s, transparency_log.publish_tree_head),
    ]
    if config.storage.snapshot_interval_s > 0:
        jobs.append(PeriodicJob("index snapshot", config.storage.snapshot_interval_s, matcher.save_snapshots))
    return jobs


def start_periodic(jobs: list[PeriodicJob], stopped: threading.Event) -> None:
    """Run each job every interval, on a daemon thread, until `stopped` is set."""
    for job in jobs:
        threading.Thread(target=_every, args=(job, stopped), name=job.name, daemon=True).start()


def _every(job: PeriodicJob, stopped: threading.Event) -> None:
    while not stopped.wait(job.interval_s):
        try:
            job.run()
        except Exception:  # a failed background job must not stop the service
            log.exception("background job %s failed", job.name)
