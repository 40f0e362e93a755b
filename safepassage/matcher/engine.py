"""The matcher: galleries, their indexes, and 1:1, 1:N and 1:few search.

The store is the source of truth; every mutation is committed there first
(that commit is the acknowledgement) and then applied to the in-memory index.
A crash between the two loses nothing: at start-up each index is loaded from
a snapshot only if it matches the store exactly, and rebuilt otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from safepassage import store
from safepassage.core.errors import SafePassageError
from safepassage.matcher.batcher import BatchSettings, BatchStats, MicroBatcher
from safepassage.matcher.errors import InvalidSearch, TooManyReferences
from safepassage.matcher.gallery import (
    GalleryInfo,
    GallerySpec,
    Identification,
    ThresholdChoice,
    Verification,
    check_threshold,
)
from safepassage.matcher.gallery_calibration import GalleryCalibration, check_cohort_request, split_cohort
from safepassage.matcher.gallery_index import GalleryIndex
from safepassage.matcher.index import set_search_threads
from safepassage.matcher.index_loader import IndexLoader
from safepassage.matcher.index_policy import IndexPolicy
from safepassage.matcher.limits import SearchLimits
from safepassage.matcher.live_gallery import LiveGallery, record_of, spec_of
from safepassage.matcher.protected_templates import ProtectedTemplates
from safepassage.matcher.protection import TransformKeyring
from safepassage.matcher.rwlock import ReadWriteLock
from safepassage.matcher.search import Hits, identifications, pairwise_score
from safepassage.matcher.subject_writes import SubjectWrites
from safepassage.matcher.thresholds import check_target_fpir, choose_threshold
from safepassage.matcher.vector_bounds import check_templates
from safepassage.matcher.vectors import as_matrix, check_gallery_id, check_reference_id

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from safepassage.matcher.milvus_connection import MilvusConnection

log = logging.getLogger(__name__)


class Matcher:
    def __init__(
        self,
        template_store: store.TemplateStore,
        snapshot_dir: Path,
        snapshot_key: bytes,
        limits: SearchLimits | None = None,
        *,
        protection: TransformKeyring | None = None,
        batching: BatchSettings | None = None,
        index_policy: IndexPolicy | None = None,
        milvus: MilvusConnection | None = None,
    ) -> None:
        self._store = template_store
        self._loader = IndexLoader(
            template_store, snapshot_dir, snapshot_key, index_policy or IndexPolicy(), milvus
        )
        self._templates = ProtectedTemplates(protection)
        limits = limits or SearchLimits()
        self._writes = SubjectWrites(template_store, self._templates, limits)
        self._batcher = None
        if batching is not None and batching.enabled:
            self._batcher = MicroBatcher(
                batching, self._search, thread_setup=lambda: set_search_threads(batching.threads)
            )
        self.limits = limits
        self._galleries: dict[str, LiveGallery] = {}
        self._lock = threading.Lock()

    # -- start-up and shutdown -------------------------------------------------

    def load(self) -> None:
        """Bring every gallery of the store into memory, from a verified snapshot or a rebuild."""
        for record in self._store.galleries.records():
            spec = spec_of(record)
            lock = ReadWriteLock()
            index, generation = self._loader.open(spec, lock)
            calibration = GalleryCalibration(self._store, spec.gallery_id, spec.dimension)
            live = LiveGallery(spec, record.created_at, index, calibration, lock, generation, index.builds)
            self._galleries[spec.gallery_id] = live
            # The policy may want another kind than the snapshot's, or than flat for a large gallery.
            index.maybe_rebuild()
        log.info("matcher loaded %d galleries", len(self._galleries))

    def save_snapshots(self) -> int:
        """Snapshot every gallery changed since its last snapshot; returns how many were written."""
        written = 0
        for gallery_id in list(self._galleries):
            live = self._galleries.get(gallery_id)
            if live is None:
                continue
            with live.lock.reading():
                try:
                    generation = self._loader.generation_to_save(live.spec, live.index)
                except store.GalleryNotFound:
                    continue
                if generation is None:
                    continue
                if (generation, live.index.builds) == (live.snapshot_generation, live.snapshot_builds):
                    continue
                self._loader.save(live.spec, live.index)
                live.snapshot_generation = generation
                live.snapshot_builds = live.index.builds
                written += 1
        return written

    def flush_erasures(self) -> int:
        """After templates were deleted to erase a person: no file may keep them.

        The store's deleted rows are zeroed in its main file (secure_delete) once
        its write-ahead log is checkpointed and truncated, and the index snapshot
        of each changed gallery is rewritten now rather than at the next interval.
        Returns the snapshots written.
        """
        self._store.checkpoint()
        for live in list(self._galleries.values()):
            self._loader.erased(live.index)
        return self.save_snapshots()

    def close(self) -> None:
        """Stop background work: searches queued in the micro-batcher are answered first.

        Index rebuilds start no more; one in progress is dropped before its swap
        (its daemon thread ends with the process).
        """
        if self._batcher is not None:
            self._batcher.close()
        for live in list(self._galleries.values()):
            live.index.close()
        self._loader.close()

    def batch_stats(self) -> BatchStats | None:
        """Searches and batches so far; None without micro-batching."""
        return None if self._batcher is None else self._batcher.stats()

    # -- galleries -------------------------------------------------------------

    def _live(self, gallery_id: str) -> LiveGallery:
        check_gallery_id(gallery_id)
        live = self._galleries.get(gallery_id)
        if live is None:
            raise store.GalleryNotFound(f"gallery {gallery_id!r} does not exist")
        return live

    def create_gallery(self, spec: GallerySpec, *, protect: bool = False) -> GalleryInfo:
        """Create an empty gallery; `protect` stores its templates under the current protection key."""
        check_gallery_id(spec.gallery_id)
        check_threshold(spec.threshold, spec.metric)
        version = self._templates.current_version() if protect else None
        # A target FPIR needs a calibration, which needs templates: CalibrateGallery sets it.
        spec = dataclasses.replace(spec, target_fpir=None, protection_version=version)
        with self._lock:
            created_at = time.time()
            self._store.galleries.create(record_of(spec, created_at))
            lock = ReadWriteLock()
            index = self._loader.create(spec, lock)
            calibration = GalleryCalibration(self._store, spec.gallery_id, spec.dimension)
            self._galleries[spec.gallery_id] = LiveGallery(spec, created_at, index, calibration, lock)
        log.info("gallery %s created (%s)", spec.gallery_id, spec.purpose.value)
        return GalleryInfo(spec, 0, created_at)

    def spec(self, gallery_id: str) -> GallerySpec:
        """The gallery's configuration as stored (a fixed or FPIR-following threshold)."""
        return self._live(gallery_id).spec

    def describe(self, gallery_id: str) -> GalleryInfo:
        """The gallery as it stands; under a target-FPIR policy, with the threshold at its present size."""
        live = self._live(gallery_id)
        size = live.index.size
        spec, summary = live.calibration.at_size(live.spec, size)
        failures = live.index.failed_builds if isinstance(live.index, GalleryIndex) else 0
        return GalleryInfo(
            spec,
            size,
            live.created_at,
            live.index.kind,
            live.index.recall,
            summary,
            quarantined=self._store.quarantine.count(gallery_id),
            index_build_failures=failures,
            background_cohort=0 if (cohort := live.calibration.cohort()) is None else len(cohort),
        )

    def calibrate(
        self,
        gallery_id: str,
        impostors: npt.ArrayLike | None = None,
        leave_one_out_sample: int = 0,
        target_fpir: float | None = None,
        *,
        background_cohort: bool = False,
    ) -> GalleryInfo:
        """Measure impostor scores (non-mated probes, or leave-one-out) and store them.

        With `target_fpir` the gallery's threshold follows that FPIR at its
        current size from now on; without, it keeps its fixed threshold. With
        `background_cohort`, half of the impostors (a seeded draw) become the gallery's background
        cohort and the other half calibrate the normalised scores it gives (see gallery_calibration).
        """
        live = self._live(gallery_id)
        spec = live.spec
        if (impostors is None) == (leave_one_out_sample <= 0):
            raise InvalidSearch("give either impostor probes or a leave-one-out sample size")
        if target_fpir is not None:
            check_target_fpir(target_fpir)
        if background_cohort:
            check_cohort_request(spec, impostors is not None, target_fpir)
        elif live.calibration.cohort() is not None and target_fpir is None:
            raise InvalidSearch(
                f"gallery {gallery_id!r} has a normalised threshold: without a background cohort, name a"
                " target FPIR to set the threshold on distances again"
            )
        cohort = None
        if impostors is not None:
            # Held to the model's bounds like templates: they set the gallery's thresholds.
            matrix = check_templates(spec, impostors, "impostor")
            if len(matrix) > self.limits.max_batch:
                raise TooManyReferences(
                    f"{len(matrix)} impostor probes exceed the limit of {self.limits.max_batch}"
                )
            prepared = self._templates.prepare(spec, matrix)
            if background_cohort:
                cohort, prepared = split_cohort(prepared)
            with live.lock.reading():
                scores = live.calibration.measure_with_probes(spec, live.index, prepared, cohort)
        else:
            with live.lock.reading():
                scores = live.calibration.measure_leave_one_out(
                    live.index, min(leave_one_out_sample, self.limits.max_batch)
                )
        threshold = spec.threshold
        if target_fpir is not None:
            threshold = scores.threshold_for(target_fpir, self.count(gallery_id))
        live.spec = spec_of(live.calibration.save(scores, target_fpir, threshold, cohort))
        log.info(
            "gallery %s calibrated: %d impostor searches (%s), target FPIR %s, background cohort %d",
            gallery_id,
            scores.searches,
            scores.method.value,
            target_fpir,
            0 if cohort is None else len(cohort),
        )
        return self.describe(gallery_id)

    def renew_protection(self) -> tuple[int, list[str], int]:
        """A new protection key; every protected gallery rewritten under it; old keys destroyed.

        Each gallery is rewritten in one store transaction under its write
        lock (searches wait). Returns (new version, galleries, templates rewritten).
        """
        with self._lock:
            new_version = self._templates.rotate()
            renewed, rewritten = [], 0
            for gallery_id in sorted(self._galleries):
                live = self._galleries[gallery_id]
                renewal = self._templates.renewal(live.spec, new_version)
                if renewal is None:
                    continue
                with live.lock.writing():
                    ids, vectors = live.index.contents()
                    fresh = renewal.rewrite(vectors)
                    self._store.templates.rewrite(gallery_id, ids, fresh, new_version, rekey=renewal.rewrite)
                    live.spec = dataclasses.replace(live.spec, protection_version=new_version)
                    live.calibration.forget()  # its background cohort was re-keyed too
                    live.index.close()
                    live.index = self._loader.rebuild(live.spec, live.lock)
                renewed.append(gallery_id)
                rewritten += len(ids)
            self._templates.retire_all_but(new_version)
        self.save_snapshots()
        log.info("template protection renewed: version %d, %d galleries", new_version, len(renewed))
        return new_version, renewed, rewritten

    def list_galleries(self) -> list[GalleryInfo]:
        return [self.describe(g) for g in sorted(self._galleries)]

    def delete_gallery(self, gallery_id: str) -> int:
        live = self._live(gallery_id)
        with self._lock, live.lock.writing():
            erased = self._store.galleries.delete(gallery_id)
            del self._galleries[gallery_id]
            live.index.close()
            self._loader.drop(gallery_id)
        log.info("gallery %s deleted with %d templates", gallery_id, erased)
        return erased

    # -- subjects: every write goes through subject_writes, under the gallery's write lock ----------

    def insert(self, gallery_id: str, reference_id: str, vector: npt.ArrayLike) -> None:
        self._writes.insert(self._live(gallery_id), reference_id, vector)

    def insert_many(
        self, gallery_id: str, items: Sequence[tuple[str, npt.ArrayLike]]
    ) -> list[SafePassageError | None]:
        """Insert a batch; each item succeeds or fails on its own (None = inserted)."""
        return self._writes.insert_many(self._live(gallery_id), items)

    def add_captures(
        self, gallery_id: str, reference_id: str, vectors: Sequence[npt.ArrayLike]
    ) -> store.SubjectChange:
        """Add captures to an enrolled subject; from now on it is searched by their mean template."""
        return self._writes.add_captures(self._live(gallery_id), reference_id, vectors)

    def add_captures_many(
        self, gallery_id: str, items: Sequence[tuple[str, Sequence[npt.ArrayLike]]]
    ) -> list[store.SubjectChange | SafePassageError]:
        """Captures for many subjects; each succeeds or fails on its own."""
        return self._writes.add_captures_many(self._live(gallery_id), items)

    def delete(self, gallery_id: str, reference_id: str) -> None:
        """Erase a subject: its template and every capture."""
        self._writes.delete(self._live(gallery_id), reference_id)

    def count(self, gallery_id: str) -> int:
        return self._live(gallery_id).index.size

    # -- search ------------------------------------------------------------------

    def check_search(
        self,
        gallery_id: str,
        top_k: int = 5,
        restrict_to: Sequence[str] | None = None,
        threshold: float | None = None,
        target_fpir: float | None = None,
    ) -> ThresholdChoice:
        """Validate a search's parameters (also when an image held no face); returns the threshold used."""
        live = self._live(gallery_id)
        if not 1 <= top_k <= self.limits.max_top_k:
            raise InvalidSearch(f"top_k must be between 1 and {self.limits.max_top_k}, got {top_k}")
        used = choose_threshold(
            live.spec,
            live.index.size,
            live.calibration.scores(),
            threshold=threshold,
            target_fpir=target_fpir,
        )
        if restrict_to:
            if len(restrict_to) > self.limits.max_restrict_to:
                raise TooManyReferences(
                    f"restrict_to names {len(restrict_to)} references;"
                    f" the limit is {self.limits.max_restrict_to}"
                )
            for reference_id in restrict_to:
                check_reference_id(reference_id)
            # As Verify answers for an unknown reference: a 1:few search of ids that are not
            # there would otherwise answer NO_MATCH, as if they had been searched.
            wanted = set(restrict_to)
            unknown = len(wanted) - len(self._store.templates.template_ids(gallery_id, list(wanted)))
            if unknown:
                raise store.ReferenceNotFound(
                    f"{unknown} of the {len(wanted)} restrict_to references are not in gallery {gallery_id!r}"
                )
        return used

    def _search(self, gallery_id: Hashable, probes: npt.NDArray[np.float32], k: int) -> Hits:
        """An unrestricted search of prepared probes (the micro-batcher's search function)."""
        live = self._live(str(gallery_id))
        with live.lock.reading():
            return live.index.search(probes, k)

    def identify(
        self,
        gallery_id: str,
        probes: npt.ArrayLike,
        top_k: int = 5,
        restrict_to: Sequence[str] | None = None,
        threshold: float | None = None,
        target_fpir: float | None = None,
    ) -> list[Identification]:
        """1:N open-set search of each probe; 1:few when restrict_to is given.

        Unrestricted searches of an exactly searched gallery from concurrent callers
        are gathered into one batch by the micro-batcher, when there is one.
        """
        live = self._live(gallery_id)
        spec = live.spec
        used = self.check_search(gallery_id, top_k, restrict_to, threshold, target_fpir)
        matrix = as_matrix(probes, spec.dimension)
        if len(matrix) > self.limits.max_batch:
            raise TooManyReferences(f"{len(matrix)} probes exceed the limit of {self.limits.max_batch}")
        subset = None
        if restrict_to:
            known = self._store.templates.template_ids(gallery_id, list(restrict_to))
            subset = np.fromiter(known.values(), dtype=np.int64, count=len(known))
        while True:
            prepared = self._templates.prepare(spec, matrix)
            if subset is not None:
                with live.lock.reading():
                    hits = live.index.search(prepared, top_k, subset)
            elif self._batcher is not None and live.index.kind == "flat":
                # Batches pay only on the exact scan (one matrix product for many probes). An
                # approximate index searches a batch probe by probe, so one batch worker would only
                # serialise concurrent callers that the RPC threads could search side by side.
                hits = self._batcher.search(gallery_id, prepared, top_k)
            else:
                hits = self._search(gallery_id, prepared, top_k)
            if live.spec.protection_version == spec.protection_version:
                break
            spec = live.spec  # re-keyed during the search: search again under the new key
        found = [int(i) for i in np.unique(hits.ids) if i >= 0]
        names: dict[int, str] = self._store.templates.reference_ids(gallery_id, found) if found else {}
        normalised = live.calibration.normalised(spec, prepared, hits.scores)
        return identifications(hits, names, spec.metric, used, normalised)

    def verify(
        self,
        gallery_id: str,
        reference_id: str,
        probe: npt.ArrayLike,
        threshold: float | None = None,
    ) -> Verification:
        """1:1: the probe against the template of one reference id."""
        live = self._live(gallery_id)
        spec = live.spec
        check_reference_id(reference_id)
        used = spec.threshold if threshold is None else check_threshold(threshold, spec.metric)
        vector = self._templates.template(spec, probe)
        _, template = self._store.templates.get(gallery_id, reference_id)
        score = pairwise_score(vector, template, spec.metric)
        # float64: a distance from a far-off probe need not fit a float32.
        normalised = live.calibration.normalised(spec, vector[None, :], np.array([[score]], np.float64))
        ratio = None if normalised is None else float(normalised[0, 0])
        return Verification(score, spec.metric, used, ratio)
