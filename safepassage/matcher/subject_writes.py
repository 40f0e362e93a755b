"""Writes to a live gallery's subjects: the store commits first, then the index follows.

Every write holds the gallery's write lock, so searches never see the store and the index disagree;
the store's commit is the acknowledgement (safepassage.matcher.engine explains the crash story). A
template is transformed under the gallery's key as it is when the lock is taken: a re-keying may
have run since the caller read the gallery's spec.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from safepassage import store
from safepassage.core.errors import SafePassageError
from safepassage.matcher.errors import InvalidVector, TooManyReferences
from safepassage.matcher.fusion import mean_template
from safepassage.matcher.limits import SearchLimits
from safepassage.matcher.live_gallery import LiveGallery
from safepassage.matcher.protected_templates import ProtectedTemplates
from safepassage.matcher.vector_bounds import check_template, stored_bounds
from safepassage.matcher.vectors import check_reference_id

__all__ = ["SubjectWrites"]


class SubjectWrites:
    def __init__(
        self, template_store: store.TemplateStore, templates: ProtectedTemplates, limits: SearchLimits
    ) -> None:
        self._store = template_store
        self._templates = templates
        self.limits = limits

    def insert(self, live: LiveGallery, reference_id: str, vector: npt.ArrayLike) -> None:
        check_reference_id(reference_id)
        spec = live.spec
        vector = check_template(spec, vector)
        template = self._templates.template(spec, vector)
        with live.lock.writing():
            if live.spec is not spec:  # re-keyed meanwhile: transform under the gallery's new key
                template = self._templates.template(live.spec, vector)
            live.index.check_room(1)  # refused before the store commits, so nothing is half done
            (template_id,) = self._store.templates.insert(live.spec.gallery_id, [(reference_id, template)])
            live.index.add(np.array([template_id], np.int64), template[None, :])

    def insert_many(
        self, live: LiveGallery, items: Sequence[tuple[str, npt.ArrayLike]]
    ) -> list[SafePassageError | None]:
        """Insert a batch; each item succeeds or fails on its own (None = inserted)."""
        gallery_id = live.spec.gallery_id
        if len(items) > self.limits.max_batch:
            raise TooManyReferences(f"batch of {len(items)} exceeds the limit of {self.limits.max_batch}")
        outcomes: list[SafePassageError | None] = [None] * len(items)
        accepted: list[tuple[int, str, npt.NDArray[np.float32]]] = []
        seen: set[str] = set()
        spec = live.spec
        for position, (reference_id, vector) in enumerate(items):
            try:
                check_reference_id(reference_id)
                template = self._templates.template(spec, check_template(spec, vector))
                if reference_id in seen:
                    raise store.DuplicateReference(f"reference {reference_id!r} appears twice in this batch")
            except SafePassageError as error:
                outcomes[position] = error
                continue
            seen.add(reference_id)
            accepted.append((position, reference_id, template))
        with live.lock.writing():
            if live.spec is not spec:  # re-keyed meanwhile: transform under the gallery's new key
                raw = {position: items[position][1] for position, _, _ in accepted}
                accepted = [(p, r, self._templates.template(live.spec, raw[p])) for p, r, _ in accepted]
            existing = self._store.templates.template_ids(gallery_id, [r for _, r, _ in accepted])
            fresh = []
            for position, reference_id, template in accepted:
                if reference_id in existing:
                    outcomes[position] = store.DuplicateReference(
                        f"reference {reference_id!r} already exists in gallery {gallery_id!r}"
                    )
                else:
                    fresh.append((position, reference_id, template))
            if fresh:
                live.index.check_room(len(fresh))
                ids = self._store.templates.insert(live.spec.gallery_id, [(r, t) for _, r, t in fresh])
                live.index.add(np.asarray(ids, np.int64), np.stack([t for _, _, t in fresh]))
        return outcomes

    def add_captures(
        self, live: LiveGallery, reference_id: str, vectors: Sequence[npt.ArrayLike]
    ) -> store.SubjectChange:
        """Add captures to an enrolled subject; from now on it is searched by their fused template.

        The fusion is the mean template (safepassage.matcher.fusion.mean_template), chosen by
        benchmarks/fusion_comparison.py: it misses fewer people than the best single capture at
        the same FPIR and keeps one index entry per subject, so a search costs what it did.
        """
        (outcome,) = self.add_captures_many(live, [(reference_id, vectors)])
        if isinstance(outcome, SafePassageError):
            raise outcome
        return outcome

    def add_captures_many(
        self, live: LiveGallery, items: Sequence[tuple[str, Sequence[npt.ArrayLike]]]
    ) -> list[store.SubjectChange | SafePassageError]:
        """Captures for many subjects; each succeeds or fails on its own, in its own store transaction.

        The index follows once for the whole batch: removing an entry from an exact index moves the
        rows after it, so one removal per subject would make a bulk addition quadratic.
        """
        if len(items) > self.limits.max_batch:
            raise TooManyReferences(f"batch of {len(items)} exceeds the limit of {self.limits.max_batch}")
        spec = live.spec
        outcomes: dict[int, store.SubjectChange | SafePassageError] = {}
        accepted: list[tuple[int, str, list[npt.NDArray[np.float32]]]] = []
        for position, (reference_id, vectors) in enumerate(items):
            try:
                check_reference_id(reference_id)
                if len(vectors) > self.limits.max_captures:
                    raise TooManyReferences(
                        f"{len(vectors)} captures exceed the limit of {self.limits.max_captures} per subject"
                    )
                raw = [check_template(spec, vector) for vector in vectors]
            except SafePassageError as error:
                outcomes[position] = error
                continue
            accepted.append((position, reference_id, raw))
        removed: list[int] = []
        # A subject named twice in a batch: its second change removes the entry its first one added.
        added: dict[int, npt.NDArray[np.float32]] = {}
        with live.lock.writing():
            try:
                for position, reference_id, raw in accepted:
                    fused: list[npt.NDArray[np.float32]] = []
                    # Under the gallery's key as it is now: a re-keying may have run since `spec` was read.
                    templates = [self._templates.template(live.spec, vector) for vector in raw]
                    try:
                        change = self._store.captures.add(
                            live.spec.gallery_id,
                            reference_id,
                            templates,
                            fuse=self._fusion(live, reference_id, fused),
                            most=self.limits.max_captures,
                        )
                    except SafePassageError as error:
                        outcomes[position] = error
                        continue
                    outcomes[position] = change
                    if added.pop(change.removed, None) is None:
                        removed.append(change.removed)
                    added[change.added] = fused[-1]
            finally:  # what the store committed, the index follows, whatever stopped the batch
                if removed:
                    live.index.remove(np.asarray(removed, np.int64))
                if added:
                    live.index.add(np.asarray(list(added), np.int64), np.stack(list(added.values())))
        return [outcomes[position] for position in range(len(items))]

    @staticmethod
    def _fusion(live: LiveGallery, reference_id: str, fused: list[npt.NDArray[np.float32]]) -> store.Fuse:
        def fuse(captures: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            # Captures of one face fuse near them; crafted ones (v and -v) could cancel out, or fuse
            # beyond what the model produces and be quarantined at the next start: refused now.
            try:
                template = mean_template(captures, live.spec.metric)
            except ValueError as error:
                raise InvalidVector(f"the captures of {reference_id!r} do not fuse: {error}") from None
            stored_bounds(live.spec).check(template[None, :], f"the fused template of {reference_id!r}")
            fused.append(template)
            return template

        return fuse

    def delete(self, live: LiveGallery, reference_id: str) -> None:
        check_reference_id(reference_id)
        with live.lock.writing():
            template_id = self._store.templates.delete(live.spec.gallery_id, reference_id)
            live.index.remove(np.array([template_id], np.int64))
