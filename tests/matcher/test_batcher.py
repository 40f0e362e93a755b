"""MicroBatcher against real FAISS searches (FlatIndex); nothing here is timed.

Where a test needs requests to share one batch it holds the worker inside a
first searches (`Recorder(hold=2)`: a lone request's search in its caller's
thread, then the worker's first batch) and lets the others queue up behind them,
watching `MicroBatcher.waiting()`, before it lets the worker go: batches then
form the same way however slow the machine is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.matcher import FlatIndex, Hits, Metric
from safepassage.matcher.batcher import BatchSettings, BatchStats, MicroBatcher
from safepassage.matcher.errors import BackendUnavailable, InvalidSearch
from safepassage.matcher.index import set_blas_threshold
from safepassage.matcher.metric import normalise_rows

pytestmark = pytest.mark.timeout(120)

D = 128
WAIT_S = 30.0  # generous bound on every wait; a healthy run takes milliseconds


def gallery(metric: Metric, n: int = 5000, seed: int = 3) -> tuple[FlatIndex, npt.NDArray[np.float32]]:
    """An index of n random vectors, and 64 probes: near copies of stored vectors and strangers."""
    rng = np.random.default_rng(seed)
    vectors = normalise_rows(rng.standard_normal((n, D), dtype=np.float32))
    index = FlatIndex(D, metric)
    index.add(rng.permutation(10 * n)[:n].astype(np.int64), vectors)
    near = vectors[:32] + rng.standard_normal((32, D), dtype=np.float32) * 0.02
    strangers = normalise_rows(rng.standard_normal((32, D), dtype=np.float32))
    return index, np.concatenate([near, strangers]).astype(np.float32)


class Recorder:
    """The batcher's search function over one FlatIndex per key; records every call.

    The first `hold` calls (every call with `hold_all`) wait for `release` before
    searching, so that the requests made meanwhile queue up into batches.
    """

    def __init__(self, indexes: dict[Hashable, FlatIndex], *, hold: int = 0, hold_all: bool = False) -> None:
        self.indexes = indexes
        self.hold = hold
        self.hold_all = hold_all
        self.calls: list[tuple[Hashable, int, int]] = []  # (key, probes, k)
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not (hold or hold_all):
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, probes: npt.NDArray[np.float32], k: int) -> Hits:
        with self._lock:
            self.calls.append((key, len(probes), k))
            self.threads.add(threading.current_thread().name)
            held = len(self.calls) <= self.hold or self.hold_all
        if held:
            self.entered.set()
            assert self.release.wait(WAIT_S), "the test never released the search"
        return self.indexes[key].search(probes, k)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    ends = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > ends:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.002)


def assert_same_hits(got: Hits, want: Hits) -> None:
    np.testing.assert_array_equal(got.ids, want.ids)
    # BLAS and FAISS's sequential scan round differently.
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


@pytest.fixture
def blas_threshold() -> Iterator[Callable[[int], None]]:
    """Sets FAISS's process-wide BLAS threshold for one test, and puts the old value back."""
    before = int(faiss.cvar.distance_compute_blas_threshold)
    yield set_blas_threshold
    set_blas_threshold(before)


def held_batches(
    batcher: MicroBatcher,
    recorder: Recorder,
    pool: ThreadPoolExecutor,
    submit: Callable[[], list[Future[Hits]]],
    queued: int,
) -> Future[Hits]:
    """Holds a lone search of key "a" in its caller's thread and the worker in a second one (the
    recorder holds its first 2 calls), lets `submit` queue `queued` probes, then releases both."""
    probe = np.zeros((1, D), dtype=np.float32)
    first = pool.submit(batcher.search, "a", probe, 1)
    wait_until(lambda: len(recorder.calls) == 1, "the lone search to start")
    pool.submit(batcher.search, "a", probe, 1)
    wait_until(lambda: len(recorder.calls) == 2, "the worker to take the second search")
    submit()
    wait_until(lambda: batcher.waiting() == queued, f"{queued} probes to queue up")
    recorder.release.set()
    return first


# -- results ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("threshold", [None, 8 * D], ids=["default_blas", "blas_from_8"])
def test_concurrent_searches_get_the_same_hits_as_unbatched_ones(
    metric: Metric, workers: int, threshold: int | None, blas_threshold: Callable[[int], None]
) -> None:
    if threshold is not None:
        blas_threshold(threshold)
    index, probes = gallery(metric)
    recorder = Recorder({"g": index})
    threads, rounds = 16, 4
    barrier = threading.Barrier(threads)

    def caller(thread: int) -> list[tuple[int, int, Hits]]:
        rng = np.random.default_rng(thread)
        barrier.wait(WAIT_S)
        answers = []
        for _ in range(rounds):
            start, k = int(rng.integers(0, len(probes) - 3)), int(rng.integers(1, 12))
            count = int(rng.integers(1, 4))
            answers.append((start, k, batcher.search("g", probes[start : start + count], k)))
        return answers

    with (
        MicroBatcher(BatchSettings(max_wait_ms=20.0, workers=workers), recorder) as batcher,
        ThreadPoolExecutor(threads) as pool,
    ):
        results = [answer for answers in pool.map(caller, range(threads)) for answer in answers]
    assert len(results) == threads * rounds
    for start, k, hits in results:
        count = len(hits.ids)
        assert hits.ids.shape == hits.scores.shape == (count, k)
        assert hits.scores.dtype == np.float32 and hits.ids.dtype == np.int64
        assert_same_hits(hits, index.search(probes[start : start + count], k))
    stats = batcher.stats()
    assert stats.queries == sum(len(hits.ids) for _, _, hits in results)
    assert stats.batches == len(recorder.calls)
    # Lone requests run in their callers' threads, batches in the workers.
    callers = {name for name in recorder.threads if not name.startswith("micro-batcher-")}
    assert recorder.threads - callers <= {f"micro-batcher-{n}" for n in range(workers)}


def test_batches_form_under_concurrent_load() -> None:
    index, probes = gallery(Metric.L2)
    threads = 16
    barrier = threading.Barrier(threads)
    with MicroBatcher(BatchSettings(max_wait_ms=20.0), Recorder({"g": index})) as batcher:

        def caller(thread: int) -> Hits:
            barrier.wait(WAIT_S)
            return batcher.search("g", probes[thread : thread + 1], 5)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(caller, range(threads)))
        stats = batcher.stats()
    assert stats.queries == threads
    assert stats.largest_batch > 1
    assert stats.batches < threads
    assert stats.mean_batch == pytest.approx(threads / stats.batches)


def test_queued_requests_are_searched_in_one_call_at_the_largest_k() -> None:
    index, probes = gallery(Metric.COSINE)
    recorder = Recorder({"a": index}, hold=2)
    asks = [(0, 1, 1), (1, 2, 7), (3, 1, 3), (4, 3, 10)]  # (first probe, probes, k)
    futures: list[Future[Hits]] = []
    with (
        MicroBatcher(BatchSettings(max_wait_ms=1.0), recorder) as batcher,
        ThreadPoolExecutor(8) as pool,
    ):

        def submit() -> list[Future[Hits]]:
            for start, count, k in asks:
                futures.append(pool.submit(batcher.search, "a", probes[start : start + count], k))
            return futures

        held_batches(batcher, recorder, pool, submit, queued=7).result(WAIT_S)
        answers = [f.result(WAIT_S) for f in futures]
    assert recorder.calls[2:] == [("a", 7, 10)]
    for (start, count, k), hits in zip(asks, answers, strict=True):
        assert hits.ids.shape == (count, k)
        assert hits.ids.flags.c_contiguous and hits.ids.base is None  # a copy, not a view of the batch
        assert_same_hits(hits, index.search(probes[start : start + count], k))
    assert batcher.stats() == BatchStats(batches=3, queries=9, largest_batch=7, mean_batch=3.0)


def test_different_keys_never_share_a_call() -> None:
    index_a, probes_a = gallery(Metric.L2, seed=1)
    index_b, probes_b = gallery(Metric.L2, seed=2)
    recorder = Recorder({"a": index_a, "b": index_b}, hold=2)
    futures: list[tuple[str, int, Future[Hits]]] = []
    with (
        MicroBatcher(BatchSettings(max_wait_ms=1.0), recorder) as batcher,
        ThreadPoolExecutor(12) as pool,
    ):

        def submit() -> list[Future[Hits]]:
            for i in range(8):
                key, probes = ("a", probes_a) if i % 2 else ("b", probes_b)
                futures.append((key, i, pool.submit(batcher.search, key, probes[i : i + 1], 4)))
            return [f for _, _, f in futures]

        held_batches(batcher, recorder, pool, submit, queued=8).result(WAIT_S)
        for key, i, future in futures:
            index, probes = (index_a, probes_a) if key == "a" else (index_b, probes_b)
            assert_same_hits(future.result(WAIT_S), index.search(probes[i : i + 1], 4))
    assert sorted(recorder.calls[2:], key=str) == [("a", 4, 4), ("b", 4, 4)]


def test_probes_of_another_dimension_get_their_own_call() -> None:
    index, probes = gallery(Metric.L2)
    seen: list[tuple[int, int]] = []
    recorder = Recorder({"a": index}, hold=2)

    def search(key: Hashable, rows: npt.NDArray[np.float32], k: int) -> Hits:
        seen.append(rows.shape)
        if rows.shape[1] != D:
            raise InvalidSearch(f"probes of dimension {rows.shape[1]}")
        return recorder(key, rows, k)

    with MicroBatcher(BatchSettings(max_wait_ms=1.0), search) as batcher, ThreadPoolExecutor(4) as pool:
        odd: list[Future[Hits]] = []

        def submit() -> list[Future[Hits]]:
            odd.append(pool.submit(batcher.search, "a", np.ones((1, 64), np.float32), 3))
            odd.append(pool.submit(batcher.search, "a", probes[:2], 3))
            return odd

        held_batches(batcher, recorder, pool, submit, queued=3).result(WAIT_S)
        with pytest.raises(InvalidSearch):
            odd[0].result(WAIT_S)
        assert_same_hits(odd[1].result(WAIT_S), index.search(probes[:2], 3))
    assert sorted(seen[2:]) == [(1, 64), (2, D)]


def test_max_batch_caps_each_call_and_a_large_request_goes_alone() -> None:
    index, probes = gallery(Metric.L2)
    recorder = Recorder({"a": index}, hold=2)
    futures: list[Future[Hits]] = []
    with (
        MicroBatcher(BatchSettings(max_wait_ms=1.0, max_batch=4), recorder) as batcher,
        ThreadPoolExecutor(16) as pool,
    ):

        def submit() -> list[Future[Hits]]:
            futures.extend(pool.submit(batcher.search, "a", probes[i : i + 1], 2) for i in range(10))
            return futures

        held_batches(batcher, recorder, pool, submit, queued=10).result(WAIT_S)
        for i, future in enumerate(futures):
            assert_same_hits(future.result(WAIT_S), index.search(probes[i : i + 1], 2))
        large = batcher.search("a", probes[:9], 2)
        assert_same_hits(large, index.search(probes[:9], 2))
    assert sorted(rows for _, rows, _ in recorder.calls[2:-1]) == [2, 4, 4]
    assert recorder.calls[-1] == ("a", 9, 2)
    assert batcher.stats().largest_batch == 9


# -- errors and closing -------------------------------------------------------------------------------


class Refused(RuntimeError):
    pass


def test_an_error_reaches_every_caller_of_its_batch_and_no_other() -> None:
    index, probes = gallery(Metric.L2)
    recorder = Recorder({"a": index, "ok": index}, hold=2)
    refusal = Refused("the index is being rebuilt")

    def search(key: Hashable, rows: npt.NDArray[np.float32], k: int) -> Hits:
        hits = recorder(key, rows, k)
        if key == "a" and len(rows) > 1:  # the batch of 4, not the held single searches before it
            raise refusal
        return hits

    failing: list[Future[Hits]] = []
    with MicroBatcher(BatchSettings(max_wait_ms=1.0), search) as batcher, ThreadPoolExecutor(8) as pool:

        def submit() -> list[Future[Hits]]:
            failing.extend(pool.submit(batcher.search, "a", probes[i : i + 1], 3) for i in range(4))
            failing.append(pool.submit(batcher.search, "ok", probes[:1], 3))
            return failing

        held_batches(batcher, recorder, pool, submit, queued=5).result(WAIT_S)
        *refused, fine = failing
        for future in refused:
            with pytest.raises(Refused) as raised:
                future.result(WAIT_S)
            assert raised.value is refusal
        assert_same_hits(fine.result(WAIT_S), index.search(probes[:1], 3))
        # The worker survives the failure.
        assert_same_hits(batcher.search("ok", probes[5:6], 3), index.search(probes[5:6], 3))
    assert ("a", 4, 3) in recorder.calls


def test_close_searches_what_is_queued_then_refuses() -> None:
    index, probes = gallery(Metric.L2)
    recorder = Recorder({"a": index}, hold=2)
    # A wait far longer than the test: the queued batch is searched because of close, not of its deadline.
    batcher = MicroBatcher(BatchSettings(max_wait_ms=50.0), recorder)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.search, "a", probes[:1], 3)
        wait_until(lambda: len(recorder.calls) == 1, "the lone search to start")
        plug = pool.submit(batcher.search, "a", probes[4:5], 3)
        wait_until(lambda: len(recorder.calls) == 2, "the worker to take the second search")
        queued = [pool.submit(batcher.search, "a", probes[i : i + 1], 3) for i in range(1, 4)]
        wait_until(lambda: batcher.waiting() == 3, "3 probes to queue up")
        closing = pool.submit(batcher.close)
        wait_until(lambda: batcher.closed, "close to begin")
        with pytest.raises(BackendUnavailable):
            batcher.search("a", probes[:1], 3)
        recorder.release.set()
        closing.result(WAIT_S)
        assert_same_hits(first.result(WAIT_S), index.search(probes[:1], 3))
        assert_same_hits(plug.result(WAIT_S), index.search(probes[4:5], 3))
        for i, future in enumerate(queued, start=1):
            assert_same_hits(future.result(WAIT_S), index.search(probes[i : i + 1], 3))
    with pytest.raises(BackendUnavailable):
        batcher.search("a", probes[:1], 3)
    batcher.close()  # idempotent


def test_close_fails_what_a_stuck_worker_leaves_queued() -> None:
    index, probes = gallery(Metric.L2)
    recorder = Recorder({"a": index}, hold_all=True)
    batcher = MicroBatcher(BatchSettings(max_wait_ms=1.0), recorder)
    with ThreadPoolExecutor(4) as pool:
        # The first request is lone (searched in its caller's thread); the second waits for it in a
        # batch, which the worker takes and is then held in.
        first = pool.submit(batcher.search, "a", probes[:1], 3)
        wait_until(lambda: len(recorder.calls) == 1, "the lone search to start")
        second = pool.submit(batcher.search, "a", probes[1:2], 3)
        wait_until(lambda: len(recorder.calls) == 2, "the worker to take the second search")
        queued = [pool.submit(batcher.search, "a", probes[i : i + 1], 3) for i in range(2, 4)]
        wait_until(lambda: batcher.waiting() == 2, "2 probes to queue up")
        batcher.close(timeout_s=0.05)  # the worker is still held in the second search
        for future in queued:
            with pytest.raises(BackendUnavailable):
                future.result(WAIT_S)
        recorder.release.set()
        # The searches already running still answer their callers.
        assert_same_hits(first.result(WAIT_S), index.search(probes[:1], 3))
        assert_same_hits(second.result(WAIT_S), index.search(probes[1:2], 3))
    assert recorder.calls == [("a", 1, 3), ("a", 1, 3)]


def test_a_lone_request_is_searched_at_once_in_the_callers_thread() -> None:
    index, probes = gallery(Metric.L2, n=500)
    recorder = Recorder({"a": index})
    # A wait far longer than the test: only a search run at once can pass without it.
    with MicroBatcher(BatchSettings(max_wait_ms=50.0), recorder) as batcher:
        for i in range(5):
            assert_same_hits(batcher.search("a", probes[i : i + 1], 3), index.search(probes[i : i + 1], 3))
        assert batcher.waiting() == 0
    assert recorder.threads == {threading.current_thread().name}
    assert batcher.stats() == BatchStats(batches=5, queries=5, largest_batch=1, mean_batch=1.0)


def test_a_request_arriving_during_a_lone_search_waits_in_a_batch_for_a_worker() -> None:
    index, probes = gallery(Metric.L2)
    recorder = Recorder({"a": index}, hold=1)
    with MicroBatcher(BatchSettings(max_wait_ms=1.0), recorder) as batcher, ThreadPoolExecutor(4) as pool:
        lone = pool.submit(batcher.search, "a", probes[:1], 2)
        wait_until(lambda: len(recorder.calls) == 1, "the lone search to start")
        later = [pool.submit(batcher.search, "a", probes[i : i + 1], 2) for i in (1, 2)]
        # Queued, or already taken by the worker: either way not searched in their callers' threads.
        wait_until(
            lambda: batcher.waiting() + sum(rows for _, rows, _ in recorder.calls[1:]) == 2,
            "both later requests to reach the batcher",
        )
        recorder.release.set()
        assert_same_hits(lone.result(WAIT_S), index.search(probes[:1], 2))
        for i, future in zip((1, 2), later, strict=True):
            assert_same_hits(future.result(WAIT_S), index.search(probes[i : i + 1], 2))
    assert len(recorder.threads) == 2 and "micro-batcher-0" in recorder.threads
    assert sum(rows for _, rows, _ in recorder.calls) == 3


# -- settings, disabled mode, worker threads --------------------------------------------------------


def test_disabled_batcher_searches_in_the_callers_thread() -> None:
    index, probes = gallery(Metric.COSINE)
    recorder = Recorder({"a": index})
    batcher = MicroBatcher(BatchSettings(enabled=False), recorder)
    hits = batcher.search("a", probes[:3], 4)
    assert_same_hits(hits, index.search(probes[:3], 4))
    batcher.search("a", probes[3:4], 2)
    assert recorder.calls == [("a", 3, 4), ("a", 1, 2)]
    assert recorder.threads == {threading.current_thread().name}
    assert batcher.stats() == BatchStats(batches=2, queries=4, largest_batch=3, mean_batch=2.0)
    assert batcher.waiting() == 0
    batcher.close()
    with pytest.raises(BackendUnavailable):
        batcher.search("a", probes[:1], 2)


def test_thread_setup_runs_in_every_worker() -> None:
    index, probes = gallery(Metric.L2, n=100)
    names: list[str] = []
    lock = threading.Lock()

    def setup() -> None:
        with lock:
            names.append(threading.current_thread().name)

    with MicroBatcher(BatchSettings(workers=3), Recorder({"a": index}), thread_setup=setup) as batcher:
        batcher.search("a", probes[:1], 1)
        wait_until(lambda: len(names) == 3, "3 workers to start")
    assert sorted(names) == ["micro-batcher-0", "micro-batcher-1", "micro-batcher-2"]


def test_a_failing_thread_setup_does_not_stop_the_worker() -> None:
    index, probes = gallery(Metric.L2, n=100)

    def setup() -> None:
        raise RuntimeError("no OpenMP here")

    with MicroBatcher(BatchSettings(), Recorder({"a": index}), thread_setup=setup) as batcher:
        assert_same_hits(batcher.search("a", probes[:2], 3), index.search(probes[:2], 3))


def test_stats_start_empty() -> None:
    with MicroBatcher(BatchSettings(), Recorder({})) as batcher:
        assert batcher.stats() == BatchStats(batches=0, queries=0, largest_batch=0, mean_batch=0.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_wait_ms": 0.0},
        {"max_wait_ms": -1.0},
        {"max_wait_ms": 50.5},
        {"max_batch": 0},
        {"workers": 0},
    ],
)
def test_settings_out_of_range_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BatchSettings(**settings)  # type: ignore[arg-type]


def test_settings_at_their_limits_are_accepted() -> None:
    assert BatchSettings(max_wait_ms=50.0, max_batch=1, workers=1).max_wait_ms == 50.0


@pytest.mark.parametrize("enabled", [True, False])
def test_bad_probes_and_k_are_refused_before_any_search(enabled: bool) -> None:
    recorder = Recorder({})
    with MicroBatcher(BatchSettings(enabled=enabled), recorder) as batcher:
        for probes, k in [
            (np.zeros((0, D), np.float32), 3),
            (np.zeros(D, np.float32), 3),
            (np.zeros((1, D), np.float32), 0),
        ]:
            with pytest.raises(InvalidSearch):
                batcher.search("a", probes, k)
    assert recorder.calls == []
