"""The functional core of search: exact k-nearest neighbours over numpy arrays, and their answers.

`exact_search` is the reference that every index is checked against (as in
faiss.contrib's exhaustive search). Scores are reported in the metric's own
units: Euclidean distance (not its square) for L2, similarity for cosine.
Empty result slots carry id -1 and the metric's worst score. `identifications`
turns hits into the open-set answers that name reference ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.matcher.gallery import Candidate, Identification, ThresholdChoice, passes
from safepassage.matcher.metric import Metric, normalise_rows


@dataclass(frozen=True)
class Hits:
    """k nearest neighbours of each of q probes, closest first."""

    scores: npt.NDArray[np.float32]  # (q, k)
    ids: npt.NDArray[np.int64]  # (q, k); -1 where fewer than k exist


def exact_search(
    vectors: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    probes: npt.NDArray[np.float32],
    k: int,
    metric: Metric,
) -> Hits:
    """Brute-force search of `probes` among `vectors` (with ids `ids`)."""
    q = probes.shape[0]
    scores = np.full((q, k), metric.worst_score(), dtype=np.float32)
    found = np.full((q, k), -1, dtype=np.int64)
    if len(vectors) == 0 or k == 0:
        return Hits(scores, found)
    if metric is Metric.COSINE:
        table = normalise_rows(vectors) @ normalise_rows(probes).T
        order = np.argsort(-table, axis=0, kind="stable")
    else:
        squared = (
            (probes.astype(np.float64) ** 2).sum(1)[None, :]
            - 2.0 * vectors.astype(np.float64) @ probes.astype(np.float64).T
            + (vectors.astype(np.float64) ** 2).sum(1)[:, None]
        )
        table = np.sqrt(np.maximum(squared, 0.0))
        order = np.argsort(table, axis=0, kind="stable")
    take = min(k, len(vectors))
    for column in range(q):
        rows = order[:take, column]
        scores[column, :take] = table[rows, column]
        found[column, :take] = ids[rows]
    return Hits(scores, found)


def pairwise_score(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], metric: Metric) -> float:
    """The score between two single vectors (1:1 verification)."""
    if metric is Metric.COSINE:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            return 0.0
        return float(np.dot(a, b) / (na * nb))
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))


def identifications(
    hits: Hits,
    names: dict[int, str],
    metric: Metric,
    used: ThresholdChoice,
    normalised: npt.NDArray[np.float64] | None = None,
) -> list[Identification]:
    """Each probe's answer: its hits that `names` knows (template id -> reference id), ranked, decided.

    With ``normalised`` (the hits' scores over each probe's background-cohort scale, lower is closer:
    safepassage.matcher.fusion.cohort_normalise) the threshold applies to those instead.
    """
    results = []
    for row, (scores, ids) in enumerate(zip(hits.scores, hits.ids, strict=True)):
        candidates: list[Candidate] = []
        for column, (score, template_id) in enumerate(zip(scores, ids, strict=True)):
            name = names.get(int(template_id))
            if name is None:  # empty slot, or deleted since the search
                continue
            ratio = None if normalised is None else float(normalised[row, column])
            candidates.append(
                Candidate(
                    reference_id=name,
                    score=float(score),
                    rank=len(candidates) + 1,
                    match=passes(metric, used.value, float(score), ratio),
                    normalised_score=ratio,
                )
            )
        results.append(Identification(tuple(candidates), metric, used.value, used.source, used.target_fpir))
    return results
