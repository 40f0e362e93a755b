"""A gallery whose vectors live in Milvus: the engine's view of a MilvusIndex.

Milvus builds and persists its own index, so such a gallery has no
background rebuilds and no local snapshot; the store stays the source of
truth and `IndexLoader` checks Milvus's contents against it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from safepassage.matcher.metric import Metric
from safepassage.matcher.rwlock import ReadWriteLock
from safepassage.matcher.search import Hits

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from safepassage.matcher.milvus_index import MilvusIndex

# Index types that search every vector (IVF_FLAT is exact only with nlist 1; not assumed).
EXACT_TYPES = frozenset({"FLAT"})


class MilvusGallery:
    """The interface the engine uses of a live index, over one Milvus collection."""

    kind = "milvus"
    builds = 0  # Milvus swaps its own index segments; there is no local snapshot to invalidate

    def __init__(self, index: MilvusIndex, lock: ReadWriteLock, recall: float) -> None:
        self._index = index
        self.lock = lock
        self.metric: Metric = index.metric
        self.dimension: int = index.dimension
        # Recall@1 against exact search, measured when the gallery was opened (1.0 for FLAT).
        self.recall = recall

    @property
    def milvus(self) -> MilvusIndex:
        return self._index

    @property
    def size(self) -> int:
        return self._index.size

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        self._index.add(ids, vectors)

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        return self._index.remove(ids)

    def search(
        self, probes: npt.NDArray[np.float32], k: int, subset: npt.NDArray[np.int64] | None = None
    ) -> Hits:
        return self._index.search(probes, k, subset)

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._index.contents()

    def check_room(self, extra: int) -> None:
        """Milvus scales out; the memory budget is the cluster's."""

    def maybe_rebuild(self) -> bool:
        return False

    def memory_bytes(self) -> int:
        return 0  # held by Milvus, not by this process

    def close(self) -> None:
        self._index.close()
