"""The 1:1 comparisons of a run, and error rates split by quality quartile and by group.

Splits are read at the whole set's thresholds (FMR 1e-3 for 1:1, FPIR 0.01 for 1:N), as a deployment
runs one threshold for everyone: a quartile's or a group's rates then say what it would see. Cohort
impostor comparisons are those within the group (NIST FRTE demographics: false matches happen between
people who look alike, most often of the same group).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric
from safepassage.evaluation import metrics
from safepassage.evaluation.data import LabelledSet
from safepassage.evaluation.embed import Embeddings
from safepassage.evaluation.identification import GalleryRun
from safepassage.evaluation.report import CohortFigures, CohortRatio, QualityBand

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MAX_IMPOSTORS = 2_000_000  # all of LFW's 1.57 M cross-identity pairs fit; bigger sets are sampled


@dataclass(frozen=True)
class Comparisons:
    """Every 1:1 comparison of one pipeline: scores, the identities and qualities of both sides.

    The scores are of pairs with a face found in both photos; the pairs with a failure to acquire are
    counted (``*_failed``, of ``*_all``: every pair of the set), for the whole-system rates.
    """

    genuine: FloatArray
    impostor: FloatArray
    genuine_identity: IntArray  # index into `names`
    impostor_identities: npt.NDArray[np.int64]  # (n, 2)
    genuine_quality: FloatArray  # the worse image's quality (NaN: unknown)
    impostor_quality: FloatArray
    names: tuple[str, ...]
    images: int
    faces_found: int
    genuine_all: int
    genuine_failed: int
    impostor_all: int
    impostor_failed: int


def _score_matrix(vectors: npt.NDArray[np.float32], metric: Metric) -> FloatArray:
    # The matcher's pairwise_score for all pairs at once (float64, as pairwise_score computes L2).
    data = vectors.astype(np.float64)
    if metric is Metric.COSINE:
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        unit = data / np.where(norms == 0, 1, norms)
        return np.asarray(unit @ unit.T)
    squares = (data**2).sum(axis=1)
    distances: FloatArray = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * data @ data.T, 0.0))
    return distances


def comparisons(labelled: LabelledSet, embeddings: Embeddings, seed: int = 0) -> Comparisons:
    """Every pair of the set's photos; scored where both have a face, counted as failed where not.

    Impostor pairs beyond MAX_IMPOSTORS are sampled from all pairs (with ``seed``) before the failures
    are sorted out, so the whole-system and per-comparison rates stand on the same sample.
    """
    names = tuple(labelled.identities)
    everyone = [(index, path) for index, name in enumerate(names) for path in labelled.identities[name]]
    who = np.array([index for index, _ in everyone], np.int64)
    found = np.array([embeddings.vector(path) is not None for _, path in everyone], bool)
    if not found.any():
        raise ValueError(f"{embeddings.pipeline}: no face found in any of the {len(everyone)} photos")
    paths = [path for (_, path), ok in zip(everyone, found, strict=True) if ok]
    quality = np.array(
        [np.nan if (q := embeddings.quality(path)) is None else q for path in paths], np.float64
    )
    vectors = np.stack([embeddings.vector(p) for p in paths]).astype(np.float32)  # type: ignore[misc]
    scores = _score_matrix(vectors, embeddings.metric)
    first, second = np.triu_indices(len(everyone), k=1)
    same = who[first] == who[second]
    g1, g2 = first[same], second[same]
    i1, i2 = first[~same], second[~same]
    if len(i1) > MAX_IMPOSTORS:
        keep = np.sort(np.random.default_rng(seed).choice(len(i1), MAX_IMPOSTORS, replace=False))
        i1, i2 = i1[keep], i2[keep]
    genuine_ok, impostor_ok = found[g1] & found[g2], found[i1] & found[i2]
    at = np.cumsum(found) - 1  # a photo's row among the scored ones (order kept, so pairs stay sorted)
    a1, a2 = at[g1[genuine_ok]], at[g2[genuine_ok]]
    b1, b2 = at[i1[impostor_ok]], at[i2[impostor_ok]]
    owner = who[found]
    return Comparisons(
        genuine=scores[a1, a2],
        impostor=scores[b1, b2],
        genuine_identity=owner[a1],
        impostor_identities=np.stack([owner[b1], owner[b2]], axis=1),
        genuine_quality=np.fmin(quality[a1], quality[a2]) if len(a1) else np.zeros(0),
        impostor_quality=np.fmin(quality[b1], quality[b2]),
        names=names,
        images=len(everyone),
        faces_found=len(paths),
        genuine_all=len(g1),
        genuine_failed=int(len(g1) - genuine_ok.sum()),
        impostor_all=len(i1),
        impostor_failed=int(len(i1) - impostor_ok.sum()),
    )


def accepted(scores: FloatArray, threshold: float, higher_is_closer: bool) -> npt.NDArray[np.bool_]:
    flags: npt.NDArray[np.bool_] = scores >= threshold if higher_is_closer else scores <= threshold
    return flags


def rate(flags: npt.NDArray[np.bool_]) -> float:
    return float(flags.mean()) if len(flags) else math.nan


def mated_hits(run: GalleryRun, threshold: float) -> npt.NDArray[np.bool_]:
    """Per mated search: the right person first, at or beyond the threshold (NIST FRTE 1:N)."""
    rank1, ranks, _ = run.open_set_arrays()
    with np.errstate(invalid="ignore"):
        hits: npt.NDArray[np.bool_] = (ranks == 1) & accepted(rank1, threshold, run.higher_is_closer)
    return hits


def quality_bands(
    comp: Comparisons, run: GalleryRun, fmr_threshold: float, fpir_threshold: float, edges: FloatArray
) -> tuple[QualityBand, ...]:
    higher = run.higher_is_closer
    mated_quality = run.qualities()
    hits = mated_hits(run, fpir_threshold)
    bands = []
    for quartile in range(4):
        low, high = float(edges[quartile]), float(edges[quartile + 1])

        def inside(
            values: FloatArray, q: int = quartile, lo: float = low, hi: float = high
        ) -> npt.NDArray[np.bool_]:
            # The top quartile includes its upper edge; NaN (no ONNX face) falls in no band.
            return (values >= lo) & ((values <= hi) if q == 3 else (values < hi))

        g, i, m = inside(comp.genuine_quality), inside(comp.impostor_quality), inside(mated_quality)
        bands.append(
            QualityBand(
                quartile=quartile + 1,
                quality_from=low,
                quality_to=high,
                genuine_pairs=int(g.sum()),
                impostor_pairs=int(i.sum()),
                fnmr=rate(~accepted(comp.genuine[g], fmr_threshold, higher)),
                fmr=rate(accepted(comp.impostor[i], fmr_threshold, higher)),
                mated_searches=int(m.sum()),
                fnir=rate(~hits[m]),
            )
        )
    return tuple(bands)


def cohort_figures(
    comp: Comparisons,
    run: GalleryRun,
    labelled: LabelledSet,
    groups: Mapping[str, str],
    fmr_threshold: float,
    fpir_threshold: float,
) -> tuple[tuple[CohortFigures, ...], tuple[CohortRatio, ...]]:
    if not groups:
        return (), ()
    higher = run.higher_is_closer
    group_of = np.array([groups.get(name, "") for name in comp.names])
    hits = mated_hits(run, fpir_threshold)
    mated_group = np.array([groups.get(s.identity, "") for s in run.mated])
    figures = []
    for group in sorted({g for g in group_of if g}):
        members = group_of == group
        genuine = comp.genuine[members[comp.genuine_identity]]
        # Impostors within the group: the comparisons that decide a group's false matches (NIST FRTE).
        both = members[comp.impostor_identities[:, 0]] & members[comp.impostor_identities[:, 1]]
        impostor = comp.impostor[both]
        searches = mated_group == group
        eer = (
            metrics.eer(metrics.VerificationScores(genuine, impostor, higher))[0]
            if len(genuine) and len(impostor)
            else math.nan
        )
        rank1 = rate(np.array([s.rank_of_true() == 1 for s in run.mated], bool)[searches])
        figures.append(
            CohortFigures(
                group=group,
                identities=int(members.sum()),
                images=sum(
                    len(labelled.identities[n]) for n, m in zip(comp.names, members, strict=True) if m
                ),
                genuine_pairs=len(genuine),
                impostor_pairs=len(impostor),
                eer=eer,
                fnmr=rate(~accepted(genuine, fmr_threshold, higher)),
                fmr=rate(accepted(impostor, fmr_threshold, higher)),
                mated_searches=int(searches.sum()),
                rank1=rank1,
                fnir=rate(~hits[searches]),
            )
        )
    ratios = []
    for figure, higher_is_better in (
        ("eer", False),
        ("fnmr", False),
        ("fmr", False),
        ("fnir", False),
        ("rank1", True),
    ):
        values = {f.group: float(getattr(f, figure)) for f in figures if not math.isnan(getattr(f, figure))}
        if len(values) >= 2:
            ratio = metrics.group_ratio(values, higher_is_better=higher_is_better)
            ratios.append(
                CohortRatio(
                    figure, ratio.worst, values[ratio.worst], ratio.best, values[ratio.best], ratio.ratio
                )
            )
    return tuple(figures), tuple(ratios)
