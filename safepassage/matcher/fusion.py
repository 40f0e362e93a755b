"""Several captures per subject: templates fused, hits collapsed to subjects, scores normalised.

The functional core of multi-capture matching, over numpy arrays only (no store, no index, no I/O):

- ``mean_template``: one template from a subject's captures (the same operation averages an image's
  embedding with its mirror's: test-time flip is the mean template of two captures);
- ``fuse_hits`` / ``collapse_to_subjects``: a search over captures answers (n, k) template ids and
  scores; these turn it into subjects, each once, with its best score and the capture that gave it
  (max-score fusion), closest first;
- ``search_depth``: how many captures to ask the index for, so that ``top`` subjects always come back;
- cohort normalisation for open-set search: a probe's scores divided by its mean distance to a cohort,
  either the next subjects of its own answer (``gallery_cohort_scale``) or a fixed background set of
  faces never enrolled (``background_cohort_scale``); ``cohort_normalise`` applies either.

Which of these pay, and at what gallery sizes, is measured by ``benchmarks/fusion_comparison.py``
(results in benchmarks/results/fusion.json, summarised in benchmarks/README.md). On the shared LFW
faces the mean template beats max-score over the captures at a third of their memory, and a
background cohort beats the gallery cohort, which misleads at small gallery sizes (a flight
manifest): its scores depend on who else is enrolled.

Templates under template protection (matcher/protection.py, an orthonormal transform) fuse and
normalise alike: the transform keeps norms and distances, so the mean of transformed captures is the
transformed mean; a background set must be transformed with the gallery's key like any template.

Scores keep the metric's units everywhere except after ``cohort_normalise``, whose ratios always run
"lower is closer" (a distance over a mean distance), whatever the metric.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Scales = npt.NDArray[np.float64]

# Cohort size the comparison measured (the "mean of the next 10 subjects").
DEFAULT_COHORT_SIZE = 10


def mean_template(captures: npt.ArrayLike, metric: Metric) -> Vector:
    """The template of a subject from its (m, d) captures: their mean, kept on the captures' scale.

    Cosine: the mean of the unit-length captures, made unit length again. L2 (dlib's descriptor, which
    is not normalised: norms 1.2-1.7 on LFW): the mean rescaled to the captures' mean norm, because
    averaging shrinks a vector towards the origin and the model's thresholds (0.6 for 1:1) were set
    on distances between vectors of the captures' scale. One capture gives itself back.
    """
    matrix = _matrix(captures, "captures")
    if len(matrix) == 0:
        raise ValueError("a mean template needs at least one capture")
    data = matrix.astype(np.float64)
    norms = np.linalg.norm(data, axis=1)
    if (norms == 0).any():
        raise ValueError("a capture is the zero vector: it has no direction to average")
    if metric is Metric.COSINE:
        data = data / norms[:, None]
        target = 1.0
    else:
        target = float(norms.mean())
    mean = data.mean(axis=0)
    length = float(np.linalg.norm(mean))
    if length == 0:
        raise ValueError("the captures cancel out: their mean is the zero vector")
    return np.ascontiguousarray(mean * (target / length), dtype=np.float32)


@dataclass(frozen=True)
class SubjectMatch:
    """One subject in a probe's answer: its best score and the template (capture) that gave it."""

    subject: Hashable
    score: float
    template_id: int


# eq=False: ndarray fields make a generated __eq__ ambiguous.
@dataclass(frozen=True, eq=False)
class SubjectHits:
    """Per probe, the subjects found, each once, closest first; (n, width) arrays padded at the end.

    ``subjects`` holds subject codes (-1: empty slot): the subject itself when ``subject_of`` was an
    array, else an index into ``labels`` (the Mapping's values, in order of first appearance).
    ``scores`` are in the metric's units, the metric's worst score in empty slots; ``template_ids``
    name the capture that gave each score (-1 in empty slots).
    """

    subjects: Ids
    scores: Matrix
    template_ids: Ids
    metric: Metric
    labels: tuple[Hashable, ...] | None = None

    def counts(self) -> npt.NDArray[np.int64]:
        """How many subjects each probe's answer holds."""
        return np.asarray(np.count_nonzero(self.subjects >= 0, axis=1), dtype=np.int64)

    def label(self, code: int) -> Hashable:
        return code if self.labels is None else self.labels[code]

    def rows(self) -> list[list[SubjectMatch]]:
        """The answers as lists (one per probe), closest first."""
        return [
            [
                SubjectMatch(self.label(int(code)), float(score), int(template))
                for code, score, template in zip(codes, scores, templates, strict=True)
                if code >= 0
            ]
            for codes, scores, templates in zip(self.subjects, self.scores, self.template_ids, strict=True)
        ]


def fuse_hits(
    ids: npt.ArrayLike,
    scores: npt.ArrayLike,
    subject_of: Mapping[int, Hashable] | npt.ArrayLike,
    metric: Metric = Metric.L2,
    limit: int | None = None,
) -> SubjectHits:
    """Max-score fusion of a search over captures: each subject once, at its best capture's score.

    ``ids`` and ``scores`` are a search's (n, k) answer (template ids, -1 in empty slots). ``subject_of``
    maps a template id to its subject: an int array indexed by template id (-1: no subject), or a
    Mapping (template ids it does not hold, e.g. deleted since the search, are left out). At most
    ``limit`` subjects are kept per probe (default k); fewer when fewer subjects were found.

    Ties: between captures of one subject, the one earlier in the search's answer names the match;
    between subjects, the one whose best capture came earlier ranks first (a stable order).
    """
    id_array = np.asarray(ids, dtype=np.int64)
    score_array = np.asarray(scores, dtype=np.float32)
    if id_array.ndim != 2 or id_array.shape != score_array.shape:
        raise ValueError(f"ids {id_array.shape} and scores {score_array.shape} must be two (n, k) arrays")
    n, k = id_array.shape
    width = k if limit is None else limit
    if width < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    codes, labels = _subject_codes(id_array, subject_of)

    # Closest first, unknown and empty slots last; stable, so ties keep the search's order.
    closeness = score_array.astype(np.float64) if metric.higher_is_closer else -score_array.astype(np.float64)
    closeness = np.where(codes >= 0, closeness, -np.inf)
    order = np.argsort(-closeness, axis=1, kind="stable")
    codes = np.take_along_axis(codes, order, axis=1)
    sorted_scores = np.take_along_axis(score_array, order, axis=1)
    sorted_ids = np.take_along_axis(id_array, order, axis=1)

    first = _first_of_each_subject(codes)
    rank = np.cumsum(first, axis=1) - 1
    rows, columns = np.nonzero(first & (rank < width))
    slots = rank[rows, columns]
    out_subjects = np.full((n, width), -1, dtype=np.int64)
    out_scores = np.full((n, width), metric.worst_score(), dtype=np.float32)
    out_ids = np.full((n, width), -1, dtype=np.int64)
    out_subjects[rows, slots] = codes[rows, columns]
    out_scores[rows, slots] = sorted_scores[rows, columns]
    out_ids[rows, slots] = sorted_ids[rows, columns]
    return SubjectHits(out_subjects, out_scores, out_ids, metric, labels)


def collapse_to_subjects(
    ids: npt.ArrayLike,
    scores: npt.ArrayLike,
    subject_of: Mapping[int, Hashable] | npt.ArrayLike,
    metric: Metric = Metric.L2,
    limit: int | None = None,
) -> list[list[SubjectMatch]]:
    """Per probe, (subject, best score, matching template id), each subject once, closest first.

    ``fuse_hits`` as lists; see it for the arguments and the order of ties.
    """
    return fuse_hits(ids, scores, subject_of, metric, limit).rows()


def search_depth(top_subjects: int, max_captures: int, limit: int | None = None) -> int:
    """Captures to ask the index for so that ``top_subjects`` distinct subjects always come back.

    A subject can fill at most ``max_captures`` slots (its captures, plus its mean template where the
    index holds one), so ``top_subjects * max_captures`` hits always name enough subjects. ``limit``
    caps it (the matcher's max top-k): the answer may then hold fewer subjects.
    """
    if top_subjects < 1 or max_captures < 1:
        raise ValueError(f"top_subjects and max_captures must be >= 1, got {top_subjects}, {max_captures}")
    depth = top_subjects * max_captures
    return depth if limit is None else min(depth, limit)


def best_score(probe: npt.ArrayLike, templates: npt.ArrayLike, metric: Metric) -> tuple[float, int]:
    """1:1 against a subject with several templates: the best score and which template gave it."""
    table = _distances(
        _matrix(np.atleast_2d(np.asarray(probe)), "probe"), _matrix(templates, "templates"), metric
    )
    if table.shape[1] == 0:
        raise ValueError("the subject has no template")
    position = int(np.argmin(table[0]))
    distance = float(table[0, position])
    return (1.0 - distance if metric is Metric.COSINE else distance), position


def gallery_cohort_scale(
    subject_scores: npt.ArrayLike, metric: Metric, cohort_size: int = DEFAULT_COHORT_SIZE
) -> Scales:
    """Per probe, the mean distance of the subjects ranked 2 to ``cohort_size + 1`` in its answer.

    ``subject_scores`` are a fused answer's scores (``SubjectHits.scores``: each subject once, closest
    first). Where fewer subjects were found the cohort is those there are; where only one (or none)
    was found there is no cohort and the scale is NaN, which ``cohort_normalise`` turns into "no
    match": a gallery of one subject cannot normalise itself (use a background cohort there).
    """
    if cohort_size < 1:
        raise ValueError(f"cohort_size must be >= 1, got {cohort_size}")
    distances = _as_distance(np.asarray(subject_scores, dtype=np.float64), metric)
    if distances.ndim != 2:
        raise ValueError(f"subject_scores must be an (n, k) array, got shape {distances.shape}")
    cohort = distances[:, 1 : 1 + cohort_size]
    present = np.isfinite(cohort)
    counts = present.sum(axis=1)
    totals = np.where(present, cohort, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def background_cohort_scale(
    probes: npt.ArrayLike,
    background: npt.ArrayLike,
    metric: Metric,
    cohort_size: int = DEFAULT_COHORT_SIZE,
) -> Scales:
    """Per probe, the mean distance to its ``cohort_size`` nearest faces of a fixed background set.

    The background holds templates of people never enrolled in the gallery; the scale then does not
    depend on the gallery's size or make-up (a flight manifest of a dozen people normalises as a
    watchlist of thousands does).
    """
    if cohort_size < 1:
        raise ValueError(f"cohort_size must be >= 1, got {cohort_size}")
    table = _distances(_matrix(probes, "probes"), _matrix(background, "background"), metric)
    if table.shape[1] < cohort_size:
        raise ValueError(
            f"the background holds {table.shape[1]} faces, fewer than the cohort of {cohort_size}"
        )
    nearest = np.partition(table, cohort_size - 1, axis=1)[:, :cohort_size]
    return np.asarray(nearest.mean(axis=1), dtype=np.float64)


def cohort_normalise(subject_scores: npt.ArrayLike, scale: npt.ArrayLike, metric: Metric) -> Matrix:
    """Each probe's scores as distances over its cohort scale: ratios, lower is closer, for any metric.

    One scale per probe keeps the order of its candidates. Empty slots, and probes without a cohort
    (a NaN or non-positive scale), get +inf: no threshold accepts them.
    """
    distances = _as_distance(np.asarray(subject_scores, dtype=np.float64), metric)
    scales = np.asarray(scale, dtype=np.float64).reshape(-1)
    if distances.ndim != 2 or len(scales) != len(distances):
        raise ValueError(f"{len(scales)} scales for scores of shape {distances.shape}")
    usable = np.isfinite(scales) & (scales > 0)
    safe = np.where(usable, scales, 1.0)[:, None]
    ratios = np.where(usable[:, None] & np.isfinite(distances), distances / safe, np.inf)
    return ratios.astype(np.float32)


def _matrix(values: npt.ArrayLike, name: str) -> Matrix:
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be an (m, d) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} must hold finite numbers")
    return matrix


def _distances(probes: Matrix, vectors: Matrix, metric: Metric) -> npt.NDArray[np.float64]:
    """(n, m) distances: Euclidean for L2 (as the matcher computes them), 1 - cosine for cosine."""
    if probes.shape[1] != vectors.shape[1]:
        raise ValueError(f"probes of dimension {probes.shape[1]} against vectors of {vectors.shape[1]}")
    a, b = probes.astype(np.float64), vectors.astype(np.float64)
    if metric is Metric.COSINE:
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return np.asarray(1.0 - a @ b.T, dtype=np.float64)
    squared = (a**2).sum(1)[:, None] - 2.0 * a @ b.T + (b**2).sum(1)[None, :]
    return np.asarray(np.sqrt(np.maximum(squared, 0.0)), dtype=np.float64)


def _as_distance(scores: npt.NDArray[np.float64], metric: Metric) -> npt.NDArray[np.float64]:
    """Scores as distances (lower is closer); the worst score of an empty slot becomes +inf."""
    if metric is Metric.COSINE:
        return np.where(np.isneginf(scores), np.inf, 1.0 - scores)
    return scores


def _subject_codes(
    ids: Ids, subject_of: Mapping[int, Hashable] | npt.ArrayLike
) -> tuple[Ids, tuple[Hashable, ...] | None]:
    """Each hit's subject code (-1: empty slot or unknown template), and the labels of the codes."""
    if isinstance(subject_of, Mapping):
        unique, inverse = np.unique(ids, return_inverse=True)
        codes_of: dict[Hashable, int] = {}
        per_unique = np.full(len(unique), -1, dtype=np.int64)
        for position, template_id in enumerate(unique.tolist()):
            subject = subject_of.get(template_id) if template_id >= 0 else None
            if subject is not None:
                per_unique[position] = codes_of.setdefault(subject, len(codes_of))
        return per_unique[inverse.reshape(ids.shape)], tuple(codes_of)
    table = np.asarray(subject_of, dtype=np.int64).reshape(-1)
    if len(table) == 0:
        return np.full(ids.shape, -1, dtype=np.int64), None
    known = (ids >= 0) & (ids < len(table))
    codes = np.where(known, table[np.clip(ids, 0, len(table) - 1)], -1)
    return np.where(codes >= 0, codes, -1).astype(np.int64), None


def _first_of_each_subject(codes: Ids) -> npt.NDArray[np.bool_]:
    """Where each row's subject appears for the first time (rows already closest first)."""
    n, k = codes.shape
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=bool)
    rows = np.repeat(np.arange(n), k)
    positions = np.tile(np.arange(k), n)
    flat = codes.reshape(-1)
    # Grouped by (row, subject), earliest position first: the head of each group is the subject's best.
    order = np.lexsort((positions, flat, rows))
    grouped_rows, grouped_codes = rows[order], flat[order]
    head = np.ones(len(order), dtype=bool)
    head[1:] = (grouped_rows[1:] != grouped_rows[:-1]) | (grouped_codes[1:] != grouped_codes[:-1])
    first = np.zeros(n * k, dtype=bool)
    first[order[head]] = True
    return first.reshape(n, k) & (codes >= 0)
