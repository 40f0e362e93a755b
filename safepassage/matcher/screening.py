"""One pass over a gallery's stored templates that holds back rows that must not be indexed.

Start-up must never die on stored data. An older version stored any finite
vector, and a template far beyond its model's range makes FAISS abort while
training (safepassage.matcher.vector_bounds); a sealed row may fail to open. Either would
take the server down at every start. `Screening` yields only the rows that
are safe to index and, once the pass is done, quarantines the others in the
store (safepassage.store.quarantine): kept aside, counted by DescribeGallery, deletable.
Logs carry ids and counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from safepassage import store
from safepassage.matcher.gallery import GallerySpec
from safepassage.matcher.vector_bounds import VectorBounds, stored_bounds
from safepassage.store.quarantine import QuarantineReason

__all__ = ["Screening"]

log = logging.getLogger(__name__)

Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
# Template ids named in one log line; the rest are counted.
_LOGGED_IDS = 20


class Screening:
    """Screen a gallery's stored rows: iterate `batches()` to the end, then call `quarantine()`."""

    def __init__(self, template_store: store.TemplateStore, spec: GallerySpec) -> None:
        self._store = template_store
        self._spec = spec
        self.bounds: VectorBounds = stored_bounds(spec)
        self.out_of_bounds: list[int] = []
        self.unreadable: list[int] = []

    def batches(self) -> Iterator[Batch]:
        """The gallery's live rows that are safe to index, verified against the store's state."""
        for ids, vectors in self._store.templates.iterate(self._spec.gallery_id, unreadable=self.unreadable):
            outside = self.bounds.outside(vectors)
            if outside.any():
                self.out_of_bounds.extend(int(i) for i in ids[outside])
                keep = ~outside
                ids, vectors = ids[keep], vectors[keep]
            if len(ids):
                yield ids, vectors

    def quarantine(self) -> int:
        """Quarantine what the pass held back; returns how many rows."""
        gallery_id = self._spec.gallery_id
        counts = []
        for reason, ids in (
            (QuarantineReason.OUT_OF_BOUNDS, self.out_of_bounds),
            (QuarantineReason.UNREADABLE, self.unreadable),
        ):
            if not ids:
                continue
            try:
                count = self._store.quarantine.add(gallery_id, ids, reason)
            except store.StoreError as error:
                # Still not indexed; the store's state keeps counting them, so no snapshot of this
                # index will verify and the next start screens them again.
                log.error(
                    "gallery %s: %d templates (%s) held out of the index but not marked quarantined: %s",
                    gallery_id,
                    len(ids),
                    reason.value,
                    error,
                )
                continue
            counts.append(count)
            shown = ", ".join(str(i) for i in ids[:_LOGGED_IDS]) + (" ..." if len(ids) > _LOGGED_IDS else "")
            log.warning(
                "gallery %s: quarantined %d templates (%s): not indexed; DescribeGallery counts them,"
                " DeleteTemplate removes them; template ids %s",
                gallery_id,
                count,
                reason.value,
                shown,
            )
        if len(counts) > 1:
            log.warning("gallery %s: quarantined %d templates in all", gallery_id, sum(counts))
        self.out_of_bounds, self.unreadable = [], []
        return sum(counts)
