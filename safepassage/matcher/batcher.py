"""Micro-batching: concurrent searches of one gallery gathered into one FAISS call.

Many cameras and desks search the same gallery at once. An exact search of a
single probe streams every stored vector through memory (about 5 ms at 200k x
128, 40 ms at 1M, bound by memory bandwidth), so q probes searched one by one
cost q scans; searched together as one matrix product (BLAS) they share one
scan. `MicroBatcher.search` blocks its caller while requests for the same key
(a gallery) gather. A lone request, one that finds no other search running
or queued, is searched at once in the caller's own thread: batching must
never slow the quiet desk down. A request that arrives while another search
is running opens a batch for its key (or joins the open one), which is
searched once `max_wait_ms` has passed since it opened or it holds
`max_batch` probes. The batch is searched with one call at the largest k
asked, and each caller gets its own rows cut to its own k. Requests for
different keys never share a call, and an exception raised by the search
reaches every caller of that batch.

A batch that is due while every worker is still busy keeps taking requests
(up to `max_batch`) until a worker is free: they would wait for the worker
anyway, so under load batches grow by themselves and no request waits for
batching's sake longer than `max_wait_ms`.

The batch only pays when FAISS searches it with BLAS. Measured with faiss-cpu
1.15.1 (OMP_NUM_THREADS=1, 2-vCPU AMD EPYC, flat 200k x 128):

- `faiss.cvar.distance_compute_blas_threshold` counts queries x dimension, not
  queries: a flat search of nq probes of dimension d uses BLAS iff
  nq * d >= threshold (faiss/utils/distances.cpp, `Run_search_L2sqr` and
  `Run_search_inner_product`, since faiss PR #5022; checked here by the
  rounding of the distances, which differs between the two paths: at 1024, 7
  probes go sequential and 8 through BLAS). Searches restricted by an id
  selector (1:few) never use BLAS. The default, 128000, means 1000 queries at
  d = 128, so micro-batches of 8 to 64 gain nothing by default.
- Through BLAS a single probe is about 5.7x slower (L2 5.3 ms sequential, 30
  ms BLAS; IP 6.0 and 26 ms), so the threshold must not be set to a query
  count such as 8, which would send every lone search through BLAS.
- Milliseconds per probe, sequential / BLAS (L2): 4 probes 5.2 / 7.5, 7 probes
  5.0 / 5.1 (break-even), 8 probes 5.4 / 4.5 (1.2x), 16: 2.3x, 32: 3.5x, 64:
  4.4x (IP: 1.4x at 8, 4.9x at 64). At d = 512 the break-even is near 5 probes.

So the threshold to set (`safepassage.matcher.index.set_blas_threshold`) is 8 x the
dimension, 1024 for 128-d templates: batches of 8 or more use BLAS, lone
probes and small batches keep the faster sequential scan.

Worker threads are daemons; give `thread_setup` (e.g. pinning FAISS to one
OpenMP thread, which is a per-thread setting) to run in each before it works.
A lone request runs in its caller's thread, with that thread's own settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import numpy.typing as npt

from safepassage.matcher.errors import BackendUnavailable, InvalidSearch
from safepassage.matcher.search import Hits

log = logging.getLogger(__name__)

Probes = npt.NDArray[np.float32]
SearchFunction = Callable[[Hashable, Probes, int], Hits]

MAX_WAIT_LIMIT_MS = 50.0
DEFAULT_CLOSE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BatchSettings:
    """How long and how large batches may grow, and how many threads search them."""

    enabled: bool = True
    max_wait_ms: float = 2.0  # from the first request of a batch; 0 < x <= MAX_WAIT_LIMIT_MS
    max_batch: int = 64  # probes per search call
    workers: int = 1  # threads that run batches
    threads: int = 1  # FAISS (OpenMP) threads of each batch search

    def __post_init__(self) -> None:
        if not 0 < self.max_wait_ms <= MAX_WAIT_LIMIT_MS:
            raise ValueError(f"max_wait_ms must be in (0, {MAX_WAIT_LIMIT_MS:g}], not {self.max_wait_ms}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")


@dataclass(frozen=True)
class BatchStats:
    """Search calls made so far (in disabled mode each request is its own call)."""

    batches: int  # search calls
    queries: int  # probes searched in them
    largest_batch: int  # probes in the largest call
    mean_batch: float  # queries / batches; 0.0 before the first call


class _Request:
    __slots__ = ("done", "error", "hits", "k", "probes")

    def __init__(self, probes: Probes, k: int) -> None:
        self.probes = probes
        self.k = k
        self.done = threading.Event()
        self.hits: Hits | None = None
        self.error: BaseException | None = None

    def answer(self, hits: Hits | None, error: BaseException | None) -> None:
        self.hits, self.error = hits, error
        self.done.set()


class _Batch:
    __slots__ = ("deadline", "full", "group", "key", "requests", "rows")

    def __init__(self, key: Hashable, group: tuple[Hashable, int], deadline: float) -> None:
        self.key = key
        self.group = group
        self.deadline = deadline  # time.monotonic() after which it is searched
        self.requests: list[_Request] = []
        self.rows = 0
        self.full = False


def _checked_probes(probes: npt.ArrayLike, k: int) -> Probes:
    rows = np.ascontiguousarray(probes, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise InvalidSearch(f"probes must be a non-empty (q, d) matrix, not of shape {rows.shape}")
    if k < 1:
        raise InvalidSearch(f"k must be at least 1, not {k}")
    return rows


def _split(hits: Hits, requests: list[_Request]) -> list[Hits]:
    """Each request's own rows of a batch's answer, cut to its own k (copies, not views)."""
    total = sum(len(r.probes) for r in requests)
    widest = max(r.k for r in requests)
    if hits.ids.shape != (total, widest) or hits.scores.shape != (total, widest):
        raise RuntimeError(f"the search answered shape {hits.ids.shape} for {total} probes at k={widest}")
    if len(requests) == 1:
        return [hits]
    answers = []
    start = 0
    for request in requests:
        stop = start + len(request.probes)
        answers.append(
            Hits(hits.scores[start:stop, : request.k].copy(), hits.ids[start:stop, : request.k].copy())
        )
        start = stop
    return answers


class MicroBatcher:
    """Gathers concurrent searches per key into batches searched by `search(key, probes, k)`.

    Thread-safe. `search` runs in the batcher's worker threads; it is called
    for one key's batch at a time per worker, with `workers` batches at once.
    """

    def __init__(
        self,
        settings: BatchSettings,
        search: SearchFunction,
        *,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._search = search
        self._thread_setup = thread_setup
        self._max_wait_s = settings.max_wait_ms / 1000.0
        self._condition = threading.Condition(threading.Lock())
        # Batches waiting for a worker, oldest first; `_open` the one per group still taking requests.
        self._queue: deque[_Batch] = deque()
        self._open: dict[tuple[Hashable, int], _Batch] = {}
        # Searches running now, in a worker or in a lone caller's thread.
        self._running = 0
        self._closed = False
        self._batches = 0
        self._queries = 0
        self._largest = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"micro-batcher-{n}", daemon=True)
            for n in range(settings.workers if settings.enabled else 0)
        ]
        for worker in self._workers:
            worker.start()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- callers ---------------------------------------------------------------------------

    def search(self, key: Hashable, probes: Probes, k: int) -> Hits:
        """The k nearest neighbours of each probe, searched in a batch with others for `key`."""
        rows = _checked_probes(probes, k)
        if not self.settings.enabled:
            if self._closed:
                raise BackendUnavailable("the search batcher is closed")
            self._count(len(rows))
            return self._search(key, rows, k)
        request = _Request(rows, k)
        with self._condition:
            if self._closed:
                raise BackendUnavailable("the search batcher is closed")
            lone = self._is_idle()
            if lone:
                self._running += 1
            else:
                self._enqueue(key, request)
        if lone:
            return self._search_alone(key, rows, k)
        request.done.wait()
        if request.error is not None:
            raise request.error
        if request.hits is None:  # pragma: no cover - answer() always sets one of the two
            raise RuntimeError("a batched search ended without an answer")
        return request.hits

    @property
    def closed(self) -> bool:
        return self._closed

    def waiting(self) -> int:
        """Probes queued now and not yet taken by a worker (the queue's depth)."""
        with self._condition:
            return sum(batch.rows for batch in self._queue)

    def stats(self) -> BatchStats:
        with self._condition:
            mean = self._queries / self._batches if self._batches else 0.0
            return BatchStats(self._batches, self._queries, self._largest, mean)

    def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Search what is queued (without waiting out max_wait_ms), then stop the workers.

        Requests still queued after `timeout_s` (the workers stuck in a slow
        search) fail with BackendUnavailable. Later searches raise it too.
        Idempotent.
        """
        with self._condition:
            self._closed = True
            self._open.clear()  # nothing joins a batch any more
            self._condition.notify_all()
        ends = time.monotonic() + timeout_s
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, ends - time.monotonic()))
        with self._condition:
            left = list(self._queue)
            self._queue.clear()
        if left:
            log.warning("search batcher closed with %d batches unsearched", len(left))
        for batch in left:
            error = BackendUnavailable("the search batcher closed before this search ran")
            for request in batch.requests:
                request.answer(None, error)

    # -- lone requests ---------------------------------------------------------------------

    def _is_idle(self) -> bool:
        """Under the lock: no search is running and none is waiting."""
        return self._running == 0 and not self._queue

    def _finish(self) -> None:
        with self._condition:
            self._running -= 1

    def _search_alone(self, key: Hashable, rows: Probes, k: int) -> Hits:
        """A lone request, searched now in the caller's thread; requests arriving meanwhile batch up."""
        self._count(len(rows))
        try:
            return self._search(key, rows, k)
        finally:
            self._finish()

    # -- workers ---------------------------------------------------------------------------

    def _enqueue(self, key: Hashable, request: _Request) -> None:
        """Under the lock: add the request to its group's open batch, or open one."""
        limit = self.settings.max_batch
        # Probes of another dimension cannot be stacked with these: they get their own batch.
        group = (key, int(request.probes.shape[1]))
        batch = self._open.get(group)
        if batch is not None and batch.rows + len(request.probes) > limit:
            self._seal(batch)
            batch = None
        if batch is None:
            batch = _Batch(key, group, time.monotonic() + self._max_wait_s)
            self._open[group] = batch
            self._queue.append(batch)
            self._condition.notify_all()
        batch.requests.append(request)
        batch.rows += len(request.probes)
        if batch.rows >= limit:
            self._seal(batch)

    def _seal(self, batch: _Batch) -> None:
        """Under the lock: the batch takes no more requests and is due now."""
        batch.full = True
        if self._open.get(batch.group) is batch:
            del self._open[batch.group]
        self._condition.notify_all()

    def _take_due(self) -> _Batch | None:
        """Under the lock: the oldest batch that is full or past its wait, out of the queue, running."""
        now = time.monotonic()
        for batch in self._queue:
            if batch.full or self._closed or now >= batch.deadline:
                self._queue.remove(batch)
                if self._open.get(batch.group) is batch:
                    del self._open[batch.group]
                self._running += 1  # from now: a request arriving meanwhile batches up
                return batch
        return None

    def _next_wait(self) -> float | None:
        """Under the lock: seconds until the oldest queued batch is due (none queued: None)."""
        if not self._queue:
            return None
        # Deadlines grow along the queue, and full batches would have been taken.
        return max(0.0, self._queue[0].deadline - time.monotonic())

    def _work(self) -> None:
        if self._thread_setup is not None:
            try:
                self._thread_setup()
            except Exception:  # a worker that died here would leave its callers waiting for ever
                log.exception("search batcher worker setup failed; the worker runs without it")
        while True:
            with self._condition:
                batch = self._take_due()
                while batch is None:
                    if self._closed and not self._queue:
                        return
                    self._condition.wait(self._next_wait())
                    batch = self._take_due()
            self._run(batch)

    def _run(self, batch: _Batch) -> None:
        requests = batch.requests
        self._count(batch.rows)
        try:
            self._run_batch(batch, requests)
        finally:
            self._finish()

    def _run_batch(self, batch: _Batch, requests: list[_Request]) -> None:
        try:
            probes = (
                requests[0].probes if len(requests) == 1 else np.concatenate([r.probes for r in requests])
            )
            answers = _split(self._search(batch.key, probes, max(r.k for r in requests)), requests)
        except BaseException as error:  # every caller of the batch hears of it, whatever it is
            log.debug("batched search of %d probes failed: %s", batch.rows, type(error).__name__)
            for request in requests:
                request.answer(None, error)
            return
        for request, hits in zip(requests, answers, strict=True):
            request.answer(hits, None)

    def _count(self, rows: int) -> None:
        with self._condition:
            self._batches += 1
            self._queries += rows
            self._largest = max(self._largest, rows)
