"""One gallery's live index: the policy's choice, rebuilt in the background, with its recall measured.

`GalleryIndex` is what the engine searches and mutates. It holds the
current index (flat or approximate) and the plan it was built to; after each
mutation it asks the policy whether the gallery has outgrown that plan and
if so starts a rebuild on a daemon thread:

1. under the gallery's read lock (no writer can be active) it copies the
   index's contents and starts a journal;
2. off-lock it trains and fills the new index, then measures its recall;
3. it replays the journal (every add and remove made meanwhile) off-lock,
   then takes the write lock, replays what arrived since and swaps.

So searches go on against the old index throughout, and no acknowledged
mutation is lost. One build runs at a time in the process (their memory
peaks are large: the old index, the copy and the new index coexist). A
build that fails is logged and counted (`failed_builds`, which
DescribeGallery reports) and leaves the old index in place; FAISS aborts
rather than raises on vectors it cannot handle, so those are refused before
it sees them (ApproximateIndex.train, safepassage.matcher.vector_bounds).

Callers hold the gallery's `lock` (the engine's ReadWriteLock): reading for
search and contents, writing for add and remove, as for any VectorIndex.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from dataclasses import asdict, dataclass
from typing import Protocol

import faiss
import numpy as np
import numpy.typing as npt

from safepassage.matcher.approximate import ApproximateIndex, exact_top_k, recall_at_k
from safepassage.matcher.errors import IndexOverBudget
from safepassage.matcher.index import FlatIndex, SnapshotIndex, VectorIndex
from safepassage.matcher.index_policy import FLAT, IndexPlan, IndexPolicy, build
from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.rwlock import ReadWriteLock
from safepassage.matcher.search import Hits

log = logging.getLogger(__name__)

_MAGIC = b"SPGIX"
_FORMAT = 1
_U32 = struct.Struct("<I")
# One build at a time in the process, whichever gallery.
_BUILD_SLOT = threading.Lock()
# A failed build is retried once the gallery's size has moved this much.
_RETRY_CHANGE = 0.1


class BuiltIndex(SnapshotIndex, Protocol):
    @property
    def kind(self) -> str: ...

    def memory_bytes(self) -> int: ...


@dataclass(frozen=True)
class RecallReport:
    """Recall against exact search on held-out queries made from the gallery's own vectors."""

    at_1: float
    at_10: float
    queries: int


def measure_recall(
    index: VectorIndex,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    queries: int = 300,
    seed: int = 0,
) -> RecallReport:
    """Recall of `index` (holding exactly ids, vectors) against exact search.

    Queries are a seeded sample of the gallery's vectors moved by random
    noise of half (mated-like: the original stays the answer) and once
    (hard: the answer is often a neighbour) the median distance between a
    vector and its nearest neighbour, so they are held out: no query is a
    stored vector.
    """
    metric = index.metric
    count = min(queries, len(ids))
    if count == 0:
        return RecallReport(1.0, 1.0, 0)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(ids), size=count, replace=False)]
    # Nearest-neighbour distances of a few stored vectors set the noise's scale.
    scale_rows = sample[: min(64, count)]
    nearest = exact_top_k(ids, vectors, scale_rows, 2, metric).scores[:, 1]
    if metric is Metric.COSINE:
        nearest = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * nearest))
    finite = nearest[np.isfinite(nearest)]
    spacing = float(np.median(finite)) if len(finite) else 0.0
    directions = normalise_rows(rng.normal(size=sample.shape).astype(np.float32))
    factors = np.where(np.arange(count) % 2 == 0, 0.5, 1.0).astype(np.float32)[:, None]
    probes = sample + directions * factors * spacing
    if metric is Metric.COSINE:
        probes = normalise_rows(probes)
    exact = exact_top_k(ids, vectors, probes, 10, metric)
    found: Hits = index.search(probes, 10)
    return RecallReport(recall_at_k(found, exact, 1), recall_at_k(found, exact, 10), count)


class GalleryIndex:
    """The live index of one gallery; a VectorIndex whose implementation the policy picks."""

    def __init__(
        self,
        index: BuiltIndex,
        plan: IndexPlan | None = None,
        policy: IndexPolicy | None = None,
        lock: ReadWriteLock | None = None,
        recall: RecallReport | None = None,
        name: str = "gallery",
    ) -> None:
        if plan is None:  # an index built elsewhere (benchmarks, tests): its plan is what it is
            params = index.params if isinstance(index, ApproximateIndex) else None
            plan = IndexPlan("flat" if params is None else "approximate", params, index.size)
        if index.kind != plan.index_kind:
            raise ValueError(f"a {index.kind} index cannot serve a {plan.index_kind} plan")
        if recall is None and plan.kind == "approximate":
            # Every index reports its recall; one handed over unmeasured is measured now, while
            # the caller still owns it.
            recall = measure_recall(index, *index.contents())
        self._index: BuiltIndex = index
        self._plan = plan
        self._policy = policy or IndexPolicy()
        self.lock = lock or ReadWriteLock()
        self._recall = recall
        self.name = name
        self.metric: Metric = index.metric
        self.dimension: int = index.dimension
        self.builds = 0  # completed swaps: a snapshot older than the last one shows the old kind
        self.failed_builds = 0  # since this process started
        self._state = threading.Lock()
        self._journal: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32] | None]] | None = None
        self._worker: threading.Thread | None = None
        self._closed = False
        self._failed_at: int | None = None

    @classmethod
    def empty(
        cls,
        dimension: int,
        metric: Metric,
        policy: IndexPolicy | None = None,
        lock: ReadWriteLock | None = None,
        name: str = "gallery",
    ) -> GalleryIndex:
        return cls(FlatIndex(dimension, metric), FLAT, policy, lock, name=name)

    # -- what it is -------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._index.kind

    @property
    def plan(self) -> IndexPlan:
        return self._plan

    @property
    def recall(self) -> float:
        """recall@1 against exact search: 1.0 for flat (exact), measured after each approximate build."""
        return 1.0 if self._recall is None else self._recall.at_1

    @property
    def recall_report(self) -> RecallReport | None:
        return self._recall

    @property
    def rebuilding(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    @property
    def size(self) -> int:
        return self._index.size

    def memory_bytes(self) -> int:
        return self._index.memory_bytes()

    # -- the VectorIndex interface (callers hold the lock) ------------------------

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        self._index.add(ids, vectors)
        with self._state:
            if self._journal is not None:
                # Copies: the caller may reuse its arrays before the replay.
                self._journal.append((np.array(ids, dtype=np.int64), np.array(vectors, dtype=np.float32)))
        self.maybe_rebuild()

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        removed = self._index.remove(ids)
        with self._state:
            if self._journal is not None:
                self._journal.append((np.array(ids, dtype=np.int64), None))
        self.maybe_rebuild()
        return removed

    def search(
        self,
        probes: npt.NDArray[np.float32],
        k: int,
        subset: npt.NDArray[np.int64] | None = None,
    ) -> Hits:
        return self._index.search(probes, k, subset)

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._index.contents()

    def check_room(self, extra: int) -> None:
        """Raise IndexOverBudget if `extra` more templates would not fit the memory budget."""
        self._policy.plan(self.size + extra, self.dimension, self._plan)

    # -- rebuilding ---------------------------------------------------------------

    def maybe_rebuild(self) -> bool:
        """Start a background rebuild if the policy wants one and none is running; True if started."""
        size = self.size
        if self._closed or not self._policy.wants_rebuild(self._plan, size):
            return False
        if self._failed_at is not None and abs(size - self._failed_at) < _RETRY_CHANGE * self._failed_at:
            return False
        with self._state:
            worker = self._worker
            # A finishing build asks again from its own thread.
            if worker is not None and worker.is_alive() and worker is not threading.current_thread():
                return False
            self._worker = threading.Thread(
                target=self._rebuild, name=f"index-rebuild-{self.name}", daemon=True
            )
            self._worker.start()
        return True

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Wait until no rebuild is running (one may start another); False on timeout."""
        worker = self._worker
        while worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                return False
            if self._worker is worker:
                break
            worker = self._worker
        return True

    def close(self) -> None:
        """No rebuild starts after this, and one running is dropped before its swap."""
        self._closed = True

    def _rebuild(self) -> None:
        if self._policy.build_threads:
            faiss.omp_set_num_threads(self._policy.build_threads)
        size = self.size
        swapped = False
        try:
            with _BUILD_SLOT:
                if self._closed:
                    return
                swapped = self._build_and_swap()
            self._failed_at = None
        except IndexOverBudget as error:
            self._failed_at = size
            self.failed_builds += 1
            log.error("index of gallery %s: rebuild failed; the current index stays: %s", self.name, error)
        except Exception:
            self._failed_at = size
            self.failed_builds += 1
            log.exception("index of gallery %s: rebuild failed; the current index stays", self.name)
        finally:
            with self._state:
                self._journal = None
        if swapped:
            # The gallery may have outgrown the new plan during the build.
            self.maybe_rebuild()

    def _build_and_swap(self) -> bool:
        with self.lock.reading():
            ids, vectors = self._index.contents()
            with self._state:
                self._journal = []
        plan = self._policy.plan(len(ids), self.dimension, self._plan)
        if plan == self._plan or (plan.kind == "flat" and self._plan.kind == "flat"):
            return False
        log.info(
            "index of gallery %s: building %s for %d templates (was %s)",
            self.name,
            plan.index_kind,
            len(ids),
            self.kind,
        )
        index: BuiltIndex = build(plan, self.dimension, self.metric, ids, vectors)
        recall = measure_recall(index, ids, vectors) if plan.kind == "approximate" else None
        del ids, vectors
        replayed = self._replay(index, 0)
        if self._closed:
            return False
        with self.lock.writing():
            self._replay(index, replayed)
            self._index, self._plan, self._recall = index, plan, recall
            self.builds += 1
            with self._state:
                self._journal = None
        if recall is None:
            log.info("index of gallery %s: now %s (%d templates)", self.name, plan.index_kind, self.size)
        else:
            log.info(
                "index of gallery %s: now %s (%d templates), recall@1 %.4f, recall@10 %.4f over %d queries",
                self.name,
                plan.index_kind,
                self.size,
                recall.at_1,
                recall.at_10,
                recall.queries,
            )
        return True

    def _replay(self, index: BuiltIndex, start: int) -> int:
        """Apply journal entries from `start` on to `index`; returns the position reached."""
        with self._state:
            entries = list(self._journal[start:]) if self._journal is not None else []
        for keys, rows in entries:
            if rows is None:
                index.remove(keys)
            else:
                index.add(keys, rows)
        return start + len(entries)

    # -- serialisation -----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The plan, the measured recall and the index, for an encrypted snapshot."""
        header = json.dumps(
            {
                "plan": self._plan.to_dict(),
                "recall": None if self._recall is None else asdict(self._recall),
            },
            sort_keys=True,
        ).encode()
        body = self._index.to_bytes()
        return b"".join([_MAGIC, bytes([_FORMAT]), _U32.pack(len(header)), header, body])

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        dimension: int,
        metric: Metric,
        policy: IndexPolicy | None = None,
        lock: ReadWriteLock | None = None,
        name: str = "gallery",
    ) -> GalleryIndex:
        """What `to_bytes` wrote; ValueError when it is not a gallery index of this dimension and metric."""
        if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 5:
            raise ValueError("not a serialised gallery index")
        if data[len(_MAGIC)] != _FORMAT:
            raise ValueError(f"gallery index format {data[len(_MAGIC)]} is not supported")
        offset = len(_MAGIC) + 1
        (length,) = _U32.unpack_from(data, offset)
        offset += _U32.size
        try:
            header = json.loads(data[offset : offset + length])
            plan = IndexPlan.from_dict(header["plan"])
            recall = None if header["recall"] is None else RecallReport(**header["recall"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"gallery index header is unreadable: {error}") from None
        body = data[offset + length :]
        index: BuiltIndex
        if plan.params is None:
            index = FlatIndex.from_bytes(body, dimension, metric)
        else:
            index = ApproximateIndex.from_bytes(body, dimension, metric)
        return cls(index, plan, policy, lock, recall, name)
