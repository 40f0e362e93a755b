"""Where a gallery's index comes from at start-up and goes at shutdown.

Two backends, chosen by configuration:

- FAISS in this process (default): an index is loaded from its encrypted
  snapshot only when the snapshot agrees with the store exactly (generation,
  size, keyed content digest), else rebuilt from the store; snapshots are
  written for galleries changed since the last one. The index policy may then
  move a gallery to an approximate index in the background.
- Milvus (`MilvusConnection`): each gallery is a collection. Milvus persists
  itself, so there are no snapshots; at start-up the collection's contents
  are checked against the store's digest the same way, and refilled from the
  store when they differ (a crash between the store's commit and Milvus's
  write, or a collection changed behind the server's back).

Either way start-up never indexes what could abort it: every rebuild screens
the stored rows (safepassage.matcher.screening) and quarantines those beyond the model's
bounds or that fail to open; a snapshot or collection holding such a vector
(written by an older version) is refused and rebuilt the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from safepassage import store
from safepassage.matcher import snapshot
from safepassage.matcher.errors import SnapshotRejected
from safepassage.matcher.gallery import GallerySpec
from safepassage.matcher.gallery_index import GalleryIndex, measure_recall
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.index_policy import IndexPolicy
from safepassage.matcher.milvus_gallery import EXACT_TYPES, MilvusGallery
from safepassage.matcher.rwlock import ReadWriteLock
from safepassage.matcher.screening import Screening
from safepassage.matcher.vector_bounds import stored_bounds

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from safepassage.matcher.milvus_connection import MilvusConnection
    from safepassage.matcher.milvus_index import MilvusIndex

log = logging.getLogger(__name__)

LiveIndex = GalleryIndex | MilvusGallery


class IndexLoader:
    def __init__(
        self,
        template_store: store.TemplateStore,
        snapshot_dir: Path,
        snapshot_key: bytes,
        policy: IndexPolicy,
        milvus: MilvusConnection | None = None,
    ) -> None:
        self._store = template_store
        self._snapshot_dir = snapshot_dir
        self._snapshot_key = snapshot_key
        self.policy = policy
        self._milvus = milvus

    # -- opening ---------------------------------------------------------------------------

    def create(self, spec: GallerySpec, lock: ReadWriteLock) -> LiveIndex:
        """The index of a new, empty gallery (a stale collection of the same name is dropped)."""
        if self._milvus is not None:
            self._milvus.drop(spec.gallery_id)
            return MilvusGallery(self._milvus.index(spec.gallery_id, spec.dimension, spec.metric), lock, 1.0)
        return GalleryIndex.empty(spec.dimension, spec.metric, self.policy, lock, spec.gallery_id)

    def open(self, spec: GallerySpec, lock: ReadWriteLock) -> tuple[LiveIndex, int]:
        """The gallery's index and the store generation it was verified at (-1: built afresh)."""
        if self._milvus is not None:
            return self._open_milvus(spec, lock), -1
        path = self._snapshot_path(spec.gallery_id)
        if path.exists():
            expected = self._expected_header(spec)
            try:
                digest_of = functools.partial(self._digest_of, spec)
                index = snapshot.load(path, self._snapshot_key, expected, digest_of, self.policy, lock)
                log.info(
                    "gallery %s: %s index loaded from verified snapshot (%d templates)",
                    spec.gallery_id,
                    index.kind,
                    index.size,
                )
                return index, expected.generation
            except SnapshotRejected as error:
                log.warning(
                    "gallery %s: snapshot rejected (%s); rebuilding from the store", spec.gallery_id, error
                )
        return self.rebuild(spec, lock), -1

    def rebuild(self, spec: GallerySpec, lock: ReadWriteLock) -> LiveIndex:
        """An index of the gallery's templates in the store, screened (safepassage.matcher.screening).

        FAISS: a flat index, so a large gallery is searchable (exactly) at
        once; its approximate index follows from a background rebuild.
        """
        started = time.monotonic()
        screening = Screening(self._store, spec)
        if self._milvus is not None:
            milvus = self._milvus.index(spec.gallery_id, spec.dimension, spec.metric)
            added = milvus.refill(screening.batches())
            screening.quarantine()
            log.info("gallery %s: Milvus collection refilled (%d templates)", spec.gallery_id, added)
            return MilvusGallery(milvus, lock, self._recall_of(milvus))
        flat = FlatIndex(spec.dimension, spec.metric)
        for ids, vectors in screening.batches():
            flat.add(ids, vectors)
        screening.quarantine()
        log.info(
            "gallery %s: index rebuilt from the store (%d templates, %.1f s)",
            spec.gallery_id,
            flat.size,
            time.monotonic() - started,
        )
        index = GalleryIndex(flat, policy=self.policy, lock=lock, name=spec.gallery_id)
        index.maybe_rebuild()
        return index

    def _open_milvus(self, spec: GallerySpec, lock: ReadWriteLock) -> MilvusGallery:
        assert self._milvus is not None
        try:
            milvus = self._milvus.index(spec.gallery_id, spec.dimension, spec.metric)
        except SnapshotRejected as error:  # a collection of another shape: the store decides
            log.warning("gallery %s: Milvus collection rejected (%s); refilling", spec.gallery_id, error)
            self._milvus.drop(spec.gallery_id)
            return self._refilled(spec, lock)
        state = self._store.galleries.state(spec.gallery_id)
        digest, seen, outside = store.EMPTY_DIGEST, 0, 0
        bounds = stored_bounds(spec)
        for ids, vectors in milvus.iter_contents():
            digest = store.gallery_digest(self._store.sealer, ids, vectors, start=digest)
            seen += len(ids)
            outside += int(bounds.outside(vectors).sum())
        if outside:
            log.warning(
                "gallery %s: Milvus holds %d templates beyond the model's bounds; refilling",
                spec.gallery_id,
                outside,
            )
            return self._refilled(spec, lock)
        if (seen, digest) != (state.size, state.digest):
            log.warning(
                "gallery %s: Milvus holds %d templates, the store %d (or their contents differ); refilling",
                spec.gallery_id,
                seen,
                state.size,
            )
            return self._refilled(spec, lock)
        log.info(
            "gallery %s: Milvus collection verified against the store (%d templates)", spec.gallery_id, seen
        )
        return MilvusGallery(milvus, lock, self._recall_of(milvus))

    def _refilled(self, spec: GallerySpec, lock: ReadWriteLock) -> MilvusGallery:
        index = self.rebuild(spec, lock)
        assert isinstance(index, MilvusGallery)
        return index

    def _recall_of(self, milvus: MilvusIndex) -> float:
        """1.0 for an exhaustive index type; otherwise measured against exact search."""
        assert self._milvus is not None
        if self._milvus.settings.index_type in EXACT_TYPES:
            return 1.0
        return measure_recall(milvus, *milvus.contents()).at_1

    # -- snapshots -------------------------------------------------------------------------

    def _snapshot_path(self, gallery_id: str) -> Path:
        return self._snapshot_dir / f"{gallery_id}.snapshot"

    def _expected_header(self, spec: GallerySpec) -> snapshot.SnapshotHeader:
        state = self._store.galleries.state(spec.gallery_id)
        return snapshot.SnapshotHeader(
            gallery_id=spec.gallery_id,
            generation=state.generation,
            size=state.size,
            digest=state.digest.hex(),
            dimension=spec.dimension,
            metric=spec.metric.value,
        )

    def _digest_of(self, spec: GallerySpec, index: GalleryIndex) -> bytes:
        """The snapshot's content digest; SnapshotRejected if it holds what must not be indexed."""
        ids, vectors = index.contents()
        outside = int(stored_bounds(spec).outside(vectors).sum())
        if outside:
            # Written before templates were bounded: the rebuild quarantines them.
            raise SnapshotRejected(f"snapshot holds {outside} templates beyond the model's bounds")
        return store.gallery_digest(self._store.sealer, ids, vectors)

    def generation_to_save(self, spec: GallerySpec, index: LiveIndex) -> int | None:
        """The store generation a snapshot would record now; None when this index has none."""
        if isinstance(index, MilvusGallery):
            return None
        return self._store.galleries.state(spec.gallery_id).generation

    def save(self, spec: GallerySpec, index: LiveIndex) -> None:
        """Write the gallery's snapshot (caller holds the gallery's read lock)."""
        if isinstance(index, MilvusGallery):
            index.milvus.flush()
            return
        header = dataclasses.replace(self._expected_header(spec), index_kind=index.kind)
        snapshot.save(self._snapshot_path(spec.gallery_id), header, index, self._snapshot_key)

    def erased(self, index: LiveIndex) -> None:
        """After an erasure: no copy of the deleted vectors may stay in the backend's files."""
        if isinstance(index, MilvusGallery):
            index.milvus.flush()
            index.milvus.compact()

    def drop(self, gallery_id: str) -> None:
        self._snapshot_path(gallery_id).unlink(missing_ok=True)
        if self._milvus is not None:
            self._milvus.drop(gallery_id)

    def close(self) -> None:
        if self._milvus is not None:
            self._milvus.close()
