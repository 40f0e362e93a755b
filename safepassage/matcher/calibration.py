"""Calibrated open-set decisions: a gallery's threshold from a target false-positive identification rate.

An open-set search (is this traveller anyone on the watchlist?) makes a false
positive when a person who is *not* enrolled still gets a candidate within the
threshold. Its rate, the FPIR, is measured from impostor (non-mated) searches:
the rank-1 score of each search of someone known not to be in the gallery
(ISO/IEC 19795-1; MOSIP's ABIS ``targetFPIR``). `ImpostorScores` keeps those
scores, sorted closest first, and turns a target FPIR into a threshold.

Size extrapolation. FPIR grows with the gallery: a search of N' templates has
N' chances to meet a look-alike. Assuming the impostor comparisons of one search
are independent, a search at size N' is like N'/N independent searches at size
N, so

    FPIR_N'(t) = 1 - (1 - FPIR_N(t)) ** (N' / N)

and a target at N' needs the quantile p = 1 - (1 - target) ** (N / N') of the
scores measured at N. Real comparisons are not independent: some probes
resemble many people ("wolves") and most resemble nobody, and with that spread
FPIR grows more slowly with size than the formula says (Jensen's inequality on
each probe's chance of meeting no look-alike). Extrapolating to a *larger*
gallery therefore errs on the strict side, to a smaller one on the permissive
side; recalibrate when a gallery has changed size by a large factor rather than
leaning on the extrapolation.

Resolution. With m impostor searches the smallest FPIR that can be told apart
from zero is 1/m: a target needing fewer than one false positive among the
calibration searches raises CalibrationUnavailable saying how many searches
are needed. Scores here are rank-1 scores only: no templates or vectors.

Two ways to collect them:
- `calibrate_with_probes`: the best scores of searches with probes of people
  known not to be enrolled (a separate impostor set; the preferred way).
- `leave_one_out`: each sampled enrolled template searched against the rest of
  its own gallery. Valid only when every identity is enrolled once (a
  deduplicated watchlist): a second template of the same person would be a
  mated score and make the threshold too strict.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from safepassage.matcher.errors import CalibrationUnavailable, InvalidSearch
from safepassage.matcher.index import VectorIndex
from safepassage.matcher.metric import Metric

__all__ = [
    "CalibrationMethod",
    "ImpostorScores",
    "calibrate_with_probes",
    "choose_sample",
    "leave_one_out",
    "searches_needed",
]

log = logging.getLogger(__name__)

_MAGIC = b"SPIMPOST"
_VERSION = 1
_HEAD = struct.Struct("<8sHI")  # magic, format version, length of the JSON header
# p * m is a count of searches; a product that should be an integer can land a
# hair below it in floating point (0.1 * 100 -> 9.999...), which must not cost
# a whole search.
_COUNT_SLACK = 1e-9
_LOO_BATCH = 4096


class CalibrationMethod(enum.StrEnum):
    PROBES = "probes"
    LEAVE_ONE_OUT = "leave_one_out"


def _check_target(target_fpir: float) -> float:
    try:
        value = float(target_fpir)
    except (TypeError, ValueError):
        value = math.nan
    if not (0.0 < value < 1.0):  # also refuses NaN
        raise InvalidSearch(f"target FPIR must be strictly between 0 and 1; got {target_fpir!r}")
    return value


def _check_size(gallery_size: int, what: str) -> int:
    try:
        whole = int(gallery_size)
    except (TypeError, ValueError, OverflowError):
        whole = 0
    if isinstance(gallery_size, bool) or whole != gallery_size or whole < 1:
        raise InvalidSearch(f"{what} must be a positive whole number of templates; got {gallery_size!r}")
    return whole


def _quantile(target_fpir: float, calibrated_size: int, gallery_size: int) -> float:
    """The FPIR at the calibrated size that gives `target_fpir` at `gallery_size` (independence)."""
    return -math.expm1((calibrated_size / gallery_size) * math.log1p(-target_fpir))


def searches_needed(target_fpir: float, calibrated_size: int, gallery_size: int) -> int:
    """The fewest impostor searches (run at `calibrated_size`) that can resolve `target_fpir` at
    `gallery_size`: enough for the target to allow one false positive among them."""
    target = _check_target(target_fpir)
    p = _quantile(target, _check_size(calibrated_size, "calibrated size"), _check_size(gallery_size, "size"))
    if p <= 0.0:  # underflow: a target far below what any number of searches at this size can show
        raise CalibrationUnavailable(
            f"target FPIR {target:g} at gallery size {gallery_size} is too small to calibrate"
            f" from searches at size {calibrated_size}"
        )
    return max(1, math.ceil(1.0 / p - _COUNT_SLACK))


@dataclass(frozen=True, eq=False)
class ImpostorScores:
    """Rank-1 scores of non-mated searches against a gallery of `gallery_size` templates.

    `scores` is stored as a read-only float32 array sorted closest first
    (ascending for L2, descending for cosine), whatever order it was given in.
    """

    metric: Metric
    gallery_size: int
    scores: npt.NDArray[np.float32] = field(repr=False)
    method: CalibrationMethod
    calibrated_at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "method", CalibrationMethod(self.method))
        _check_size(self.gallery_size, "gallery size of the impostor searches")
        scores = np.array(self.scores, dtype=np.float32).reshape(-1)
        if len(scores) == 0:
            raise InvalidSearch("a calibration needs at least one impostor score; got none")
        if not np.isfinite(scores).all():
            raise InvalidSearch(
                "impostor scores must be finite (an empty search result has no rank-1 score);"
                f" {int((~np.isfinite(scores)).sum())} of {len(scores)} are not"
            )
        scores.sort(kind="stable")
        if self.metric.higher_is_closer:
            scores = scores[::-1].copy()
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "calibrated_at", float(self.calibrated_at))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImpostorScores):
            return NotImplemented
        return (
            self.metric is other.metric
            and self.gallery_size == other.gallery_size
            and self.method is other.method
            and self.calibrated_at == other.calibrated_at
            and np.array_equal(self.scores, other.scores)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array

    @property
    def searches(self) -> int:
        """How many impostor searches the scores come from."""
        return len(self.scores)

    def searches_needed(self, target_fpir: float, gallery_size: int) -> int:
        return searches_needed(target_fpir, self.gallery_size, gallery_size)

    def threshold_for(self, target_fpir: float, gallery_size: int) -> float:
        """The threshold whose FPIR at `gallery_size` is estimated to be at most `target_fpir`.

        With p = 1 - (1 - target) ** (N / N') and m searches, `floor(p * m)` of
        them may match; the threshold lies halfway between the last score
        allowed and the next, so exactly that many calibration searches match
        (fewer when scores tie at the boundary: ties are never split in the
        permissive direction). The threshold is a float32 value, so the same
        searches match whether scores are compared in float32 or float64.
        """
        target = _check_target(target_fpir)
        size = _check_size(gallery_size, "gallery size")
        p = _quantile(target, self.gallery_size, size)
        m = self.searches
        allowed = math.floor(p * m + _COUNT_SLACK)
        if allowed < 1:
            raise CalibrationUnavailable(
                f"target FPIR {target:g} at gallery size {size} needs at least"
                f" {self.searches_needed(target, size)} impostor searches (run at size {self.gallery_size});"
                f" the calibration has {m}"
            )
        if allowed >= m:
            # Only when p rounds to 1 (a far smaller gallery than calibrated): every calibration
            # search may match and nothing bounds the threshold from above.
            raise CalibrationUnavailable(
                f"target FPIR {target:g} at gallery size {size} lets all {m} calibration searches"
                f" (run at size {self.gallery_size}) match, so they do not bound the threshold;"
                f" calibrate at a size nearer {size}"
            )
        return self._between(allowed)

    def _between(self, allowed: int) -> float:
        """A float32 threshold matching the `allowed` closest scores and no other."""
        s = self.scores
        inside, outside = s[allowed - 1], s[allowed]
        if inside == outside:
            # A tie at the boundary: step back to the closest score strictly before it.
            before = int((s[:allowed] != outside).sum())
            if before == 0:
                # Not even the closest search can be let through alone: match none of them.
                closer = np.float32(np.inf if self.metric.higher_is_closer else -np.inf)
                return float(np.nextafter(outside, closer))
            inside = s[before - 1]
        middle = np.float32((float(inside) + float(outside)) / 2.0)
        # Adjacent float32 values have none between them, and the halfway point then rounds
        # to one of the two: the last allowed score itself is the threshold (matching is inclusive).
        return float(inside) if middle == outside else float(middle)

    def fpir_at(self, threshold: float, gallery_size: int) -> float:
        """The FPIR estimated for `threshold` at `gallery_size`, extrapolated from the calibrated size."""
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise InvalidSearch(f"threshold must be a finite number; got {threshold!r}")
        size = _check_size(gallery_size, "gallery size")
        measured = float(self.metric.matches(self.scores, value).mean())
        if measured >= 1.0:
            return 1.0
        return -math.expm1((size / self.gallery_size) * math.log1p(-measured))

    def to_bytes(self) -> bytes:
        """Versioned bytes for the store: header, JSON description, little-endian float32 scores."""
        header = json.dumps(
            {
                "metric": self.metric.value,
                "gallery_size": self.gallery_size,
                "method": self.method.value,
                "calibrated_at": self.calibrated_at,
                "count": self.searches,
            },
            sort_keys=True,
        ).encode()
        return _HEAD.pack(_MAGIC, _VERSION, len(header)) + header + self.scores.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImpostorScores:
        """Read `to_bytes` output back; ValueError says what is wrong with bytes that are not."""
        if len(data) < _HEAD.size:
            raise ValueError(f"calibration bytes too short ({len(data)} bytes) to hold a header")
        magic, version, length = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("bytes are not an impostor-score calibration (bad magic)")
        if version != _VERSION:
            raise ValueError(f"calibration format version {version} is not supported (this reads {_VERSION})")
        end = _HEAD.size + length
        if len(data) < end:
            raise ValueError(
                f"calibration header claims {length} bytes; only {len(data) - _HEAD.size} follow"
            )
        try:
            header: dict[str, Any] = json.loads(data[_HEAD.size : end])
            count = int(header["count"])
            metric = Metric(header["metric"])
            method = CalibrationMethod(header["method"])
            gallery_size = int(header["gallery_size"])
            calibrated_at = float(header["calibrated_at"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"calibration header is unreadable: {error}") from None
        body = data[end:]
        if len(body) != 4 * count:
            raise ValueError(
                f"calibration should hold {count} scores ({4 * count} bytes); has {len(body)} bytes"
            )
        scores = np.frombuffer(body, dtype="<f4").astype(np.float32)
        try:
            return cls(metric, gallery_size, scores, method, calibrated_at)
        except InvalidSearch as error:
            raise ValueError(f"calibration content is invalid: {error}") from None


def calibrate_with_probes(
    best_scores: npt.ArrayLike,
    metric: Metric,
    gallery_size: int,
    *,
    calibrated_at: float | None = None,
) -> ImpostorScores:
    """A calibration from the rank-1 scores of searches by people known not to be enrolled.

    `gallery_size` is the number of templates those searches ran against.
    Each probe should be a different person (scores of one person's photos are
    correlated and count for less than their number).
    """
    try:
        scores = np.asarray(best_scores, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidSearch(f"best scores must be numbers, one per search: {error}") from None
    if scores.ndim != 1:
        raise InvalidSearch(f"best scores must be one score per search (1-D); got shape {scores.shape}")
    calibration = ImpostorScores(
        metric,
        gallery_size,
        scores,
        CalibrationMethod.PROBES,
        time.time() if calibrated_at is None else calibrated_at,
    )
    log.info("calibrated from %d impostor probes at size %d", calibration.searches, gallery_size)
    return calibration


def choose_sample(ids: npt.NDArray[np.int64], count: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """`count` ids drawn without replacement (all of them when there are fewer), seeded."""
    if count < 1:
        raise InvalidSearch(f"sample size must be at least 1; got {count}")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if count >= len(ids):
        return np.sort(ids)
    return np.sort(np.random.default_rng(seed).choice(ids, size=count, replace=False))


def leave_one_out(
    index: VectorIndex,
    sample_ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32] | None = None,
    *,
    calibrated_at: float | None = None,
) -> ImpostorScores:
    """A calibration from the gallery itself: each sampled template searched against the others.

    Each sampled template is searched with k=2 and the best score that is not
    its own is kept, so each search runs against size - 1 templates (the
    calibrated size). Those are impostor scores only if every identity is
    enrolled once (a deduplicated watchlist); with duplicates the threshold
    comes out too strict.

    `vectors` are the sampled templates, row for row; when omitted they are
    read from the index (`vectors_of` where the index has it, else
    `contents()`, which copies the whole gallery).
    """
    ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise InvalidSearch("leave-one-out needs at least one sampled template id; got none")
    if len(np.unique(ids)) != len(ids):
        raise InvalidSearch("leave-one-out sample ids must be distinct (a repeated search is not a new one)")
    size = index.size
    if size < 2:
        raise CalibrationUnavailable(
            f"leave-one-out needs a gallery of at least 2 templates (each is searched among the others);"
            f" this one has {size}"
        )
    if vectors is None:
        vectors = _vectors_of(index, ids)
    elif vectors.shape != (len(ids), index.dimension):
        raise InvalidSearch(
            f"expected {len(ids)} sampled vectors of dimension {index.dimension}; got shape {vectors.shape}"
        )
    best = np.empty(len(ids), dtype=np.float32)
    for start in range(0, len(ids), _LOO_BATCH):
        stop = start + _LOO_BATCH
        hits = index.search(np.ascontiguousarray(vectors[start:stop], dtype=np.float32), 2)
        own = ids[start:stop, None]
        # The first hit that is neither the template itself nor an empty slot. Normally that is
        # the second; it is the first when a tie or an approximate index puts another template ahead.
        other = (hits.ids != own) & (hits.ids >= 0)
        if not other.any(axis=1).all():
            row = int(np.flatnonzero(~other.any(axis=1))[0])
            raise CalibrationUnavailable(
                f"leave-one-out search of template {int(ids[start + row])} found no other template"
                f" in a gallery of {size}"
            )
        first = other.argmax(axis=1)
        best[start:stop] = hits.scores[np.arange(len(first)), first]
    calibration = ImpostorScores(
        index.metric,
        size - 1,
        best,
        CalibrationMethod.LEAVE_ONE_OUT,
        time.time() if calibrated_at is None else calibrated_at,
    )
    log.info("calibrated by leave-one-out: %d of %d templates searched", len(ids), size)
    return calibration


def _vectors_of(index: VectorIndex, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    lookup = getattr(index, "vectors_of", None)
    if callable(lookup):
        try:
            found: npt.NDArray[np.float32] = np.asarray(lookup(ids), dtype=np.float32)
        except (RuntimeError, KeyError) as error:  # FAISS reports a missing id as a RuntimeError
            reason = str(error).rsplit(": ", 1)[-1]
            raise InvalidSearch(f"sampled ids are not all in the gallery's index ({reason})") from None
        return found
    all_ids, all_vectors = index.contents()
    order = np.argsort(all_ids, kind="stable")
    where = np.searchsorted(all_ids, ids, sorter=order)
    where = np.minimum(where, len(all_ids) - 1)
    rows = order[where]
    missing = all_ids[rows] != ids
    if missing.any():
        raise InvalidSearch(
            f"sampled ids are not all in the gallery's index ({int(missing.sum())} missing,"
            f" e.g. {int(ids[missing][0])})"
        )
    return all_vectors[rows]
