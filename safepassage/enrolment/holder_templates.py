"""Protected face templates, held in memory only.

A protected record's templates exist at rest in one place: the record's own
row in the vault, sealed under the record's data key. The matcher's template
store, its write-ahead log and its index snapshots are sealed under
deployment keys that erasure does not destroy, so protected templates never
go there; this set is filled from the vault at start (one data key unwrapped
per record) and changed with every enrolment and erasure. Erasing a record
therefore leaves its templates in no file that the live keys can open.

Protected galleries are an NGO's caseload (thousands to some hundred
thousand people), searched 1:1 or 1:few over consenting records: an exact
scan of one contiguous matrix per gallery is fast enough and never wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric
from safepassage.enrolment.errors import RecordNotFound

__all__ = ["HolderTemplates", "NearestRecord"]


@dataclass(frozen=True)
class NearestRecord:
    record_id: str
    score: float  # the best of the record's templates


@dataclass
class _Gallery:
    rows: list[str]  # record id of each row of `matrix`
    matrix: npt.NDArray[np.float32]


def _scores(
    matrix: npt.NDArray[np.float32], probe: npt.NDArray[np.float32], metric: Metric
) -> npt.NDArray[np.float64]:
    if metric is Metric.COSINE:
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(probe))
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = (matrix.astype(np.float64) @ probe.astype(np.float64)) / norms
        scores: npt.NDArray[np.float64] = np.nan_to_num(cosine, nan=0.0)
        return scores
    diff = matrix.astype(np.float64) - probe.astype(np.float64)[None, :]
    distances: npt.NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return distances


class HolderTemplates:
    """record id -> its templates, grouped by gallery for 1:few scans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, npt.NDArray[np.float32]]] = {}
        self._galleries: dict[str, _Gallery] = {}  # rebuilt lazily after a change

    def put(self, record_id: str, gallery_id: str, templates: npt.NDArray[np.float32]) -> None:
        matrix = np.ascontiguousarray(templates, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) == 0:
            raise ValueError("templates must be a non-empty matrix")
        matrix.setflags(write=False)
        with self._lock:
            self._records[record_id] = (gallery_id, matrix)
            self._galleries.pop(gallery_id, None)

    def drop(self, record_id: str) -> int:
        """Forget the record's templates; returns how many there were (0: none held)."""
        with self._lock:
            held = self._records.pop(record_id, None)
            if held is None:
                return 0
            self._galleries.pop(held[0], None)
            return len(held[1])

    def of(self, record_id: str) -> npt.NDArray[np.float32]:
        with self._lock:
            held = self._records.get(record_id)
        if held is None:
            raise RecordNotFound(f"no templates held for record {record_id}")
        return held[1]

    def count(self, gallery_id: str | None = None) -> int:
        """Templates held (in one gallery, or in all)."""
        with self._lock:
            return sum(len(m) for g, m in self._records.values() if gallery_id is None or g == gallery_id)

    def best_score(self, record_id: str, probe: npt.NDArray[np.float32], metric: Metric) -> float:
        """The probe against every template of the record: the closest score."""
        scores = _scores(self.of(record_id), np.asarray(probe, np.float32).reshape(-1), metric)
        return float(scores.max() if metric.higher_is_closer else scores.min())

    def nearest(
        self,
        gallery_id: str,
        probe: npt.NDArray[np.float32],
        among: Collection[str],
        metric: Metric,
        top_k: int,
    ) -> list[NearestRecord]:
        """The `top_k` records of `among` closest to the probe, best first, each once."""
        gallery = self._gallery(gallery_id)
        if not gallery.rows or not among:
            return []
        wanted = set(among)
        keep = np.fromiter((r in wanted for r in gallery.rows), dtype=bool, count=len(gallery.rows))
        if not keep.any():
            return []
        scores = _scores(gallery.matrix[keep], np.asarray(probe, np.float32).reshape(-1), metric)
        rows = [r for r, k in zip(gallery.rows, keep, strict=True) if k]
        best: dict[str, float] = {}
        for record_id, score in zip(rows, scores.tolist(), strict=True):
            known = best.get(record_id)
            if known is None or (score > known if metric.higher_is_closer else score < known):
                best[record_id] = score
        ranked = sorted(best.items(), key=lambda item: item[1], reverse=metric.higher_is_closer)
        return [NearestRecord(r, s) for r, s in ranked[:top_k]]

    def _gallery(self, gallery_id: str) -> _Gallery:
        with self._lock:
            built = self._galleries.get(gallery_id)
            if built is None:
                held = [(r, m) for r, (g, m) in self._records.items() if g == gallery_id]
                rows = [r for r, m in held for _ in range(len(m))]
                dimension = held[0][1].shape[1] if held else 0
                matrix = (
                    np.concatenate([m for _, m in held]) if held else np.zeros((0, dimension), np.float32)
                )
                built = self._galleries[gallery_id] = _Gallery(rows, matrix)
            return built
