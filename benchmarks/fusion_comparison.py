"""Several captures per subject: which fusion and which score normalisation pay (issue #19).

    uv run python benchmarks/fusion_comparison.py   # 2 cores: ~4 min cold (1774 images embedded twice)
    uv run python benchmarks/fusion_comparison.py --bootstrap 200 --out /tmp/fusion.json

Data: the shared LFW subset (``$SAFEPASSAGE_FACES_DIR/lfw``, default ``../shared/data/faces/lfw``), read
by the evaluation harness (``LabelledSet``: near-duplicates and unreadable files out) and embedded by
its ``EmbeddingRunner`` through the service's own ONNX pipeline, largest face, with its cache (default
``benchmarks/results/evaluation``, the harness's own git-ignored cache; the mirrored images are cached
beside it as their own pipeline, ``onnx_mirrored``).

Protocol (the issue's): every person with two or more images is enrolled with all images but the last;
those with three or more are searched with their last image (mated searches); single-image people are
strangers (non-mated searches). The one-photo baseline enrols only the first image of the same people.
Compared, each with and without test-time flip (the image's embedding averaged with its mirror's,
``fusion.mean_template`` of the two) and with no normalisation, a gallery cohort or a background cohort:

- ``one``: one template per subject (first image);
- ``max``: every capture in the index, hits collapsed to subjects (``fusion.fuse_hits``, max-score);
- ``mean``: one mean template per subject (``fusion.mean_template``);
- ``mean+max``: the captures and the mean template in the index, collapsed as ``max``.

Normalisations (``fusion.cohort_normalise``): ``gallery cohort``: top distance over the mean distance of
the next c subjects of the same answer (``fusion.gallery_cohort_scale``); ``background cohort``: over the
mean distance to the c nearest faces of a fixed set never enrolled (``fusion.background_cohort_scale``).
The background here is the other half of the strangers (two folds: a stranger is never in its own
background); the mated searches alternate between the two halves.

Figures, each with a 95 % interval from a bootstrap over subjects (searched people, strangers and, for
1:1 impostors, gallery subjects; fixed seed; conditional on the gallery): rank-1; FNIR at FPIR 0.01
and 0.003 (threshold set on the strangers' rank-1 scores, NIST FRTE 1:N, ``evaluation.metrics``); the
paired difference to the baseline; FNMR at FMR 1e-3 (1:1 genuine: each probe against its own subject,
fused and normalised the same way; impostors: every stranger against every enrolled subject).
Calibration honesty: the threshold for FPIR 0.01 chosen on a random half of the strangers, FPIR
measured on the other half, over many halvings. Gallery size: every normalisation at 10, 30, 100 and
300 real subjects (random draws, searches pooled) and at 1,000 / 10,000 subjects with SYNTHETIC
distractor subjects (Gaussian centres and capture noise fitted to the real enrolled captures, as the
harness's distractors; random vectors are easier to reject than real strangers: a lower bound on the
difficulty). Cost: identify per query through the real ``safepassage.matcher.Matcher`` on a temporary
store (captures inserted as separate reference ids, since the Matcher holds one template per id
today, then collapsed by ``fusion.fuse_hits``), the fusion and normalisation time per query, vectors
held per subject, and the extra embedding time of the flip.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safepassage import store  # noqa: E402
from safepassage.core.metric import Metric  # noqa: E402
from safepassage.evaluation import metrics  # noqa: E402
from safepassage.evaluation.data import LabelledSet  # noqa: E402
from safepassage.evaluation.embed import EmbeddingRunner, ImageEmbedding  # noqa: E402
from safepassage.evaluation.progress import Progress  # noqa: E402
from safepassage.face import (  # noqa: E402
    DetectedFace,
    Embedder,
    EmbeddingModel,
    FaceSelection,
    ImageLimits,
    NoFaceFound,
    decode_image,
)
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, set_search_threads  # noqa: E402
from safepassage.matcher.fusion import (  # noqa: E402
    background_cohort_scale,
    cohort_normalise,
    fuse_hits,
    gallery_cohort_scale,
    mean_template,
    search_depth,
)
from safepassage.matcher.search import exact_search  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "fusion.json"
DEFAULT_CACHE = REPO / "benchmarks" / "results" / "evaluation"
DEFAULT_MODELS = REPO / "var" / "models"
MIRRORED = "onnx_mirrored"
METRIC = Metric.L2  # the service's dlib descriptor; thresholds below are its distances
ONE_TO_ONE_THRESHOLD = 0.6  # dlib's 1:1 threshold, the model's default
WATCHLIST_THRESHOLD = 0.5  # a watchlist's default
FPIR_TARGETS = (0.01, 0.003)
FMR_TARGET = 1e-3
ENROLMENTS = ("one", "max", "mean", "mean+max")
PIPELINES = ("plain", "flip")
NORMALISATIONS = ("none", "gallery cohort", "background cohort")
MAX_TOP_K = 100  # the matcher's SearchLimits.max_top_k
SLACK = 1e-9  # as evaluation.metrics: 0.003 * 1000 must allow 3 errors

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the data -------------------------------------------------------------------------------------


class MirroredEmbedder:
    """The service's embedder on the mirrored image: registered as its own pipeline, so it is cached."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    @property
    def model(self) -> EmbeddingModel:
        return self._inner.model

    def embed(self, image: npt.NDArray[np.uint8], selection: FaceSelection) -> list[DetectedFace]:
        return self._inner.embed(np.ascontiguousarray(image[:, ::-1]), selection)


@dataclass(frozen=True)
class Protocol:
    """Enrolled subjects (all images but the last), searched subjects (their last), strangers."""

    subjects: tuple[str, ...]
    captures: tuple[tuple[Path, ...], ...]  # per subject, in name order
    searched: tuple[int, ...]  # subject indices with a mated search
    probes: tuple[Path, ...]  # the last image of each searched subject
    strangers: tuple[str, ...]
    stranger_images: tuple[Path, ...]

    def images(self) -> list[Path]:
        paths = [p for group in self.captures for p in group]
        return list(dict.fromkeys([*paths, *self.probes, *self.stranger_images]))


def make_protocol(
    labelled: LabelledSet, people: int | None = None, strangers: int | None = None, seed: int = 0
) -> Protocol:
    """The issue's protocol; ``people`` / ``strangers`` draw at most that many (seeded; for a quick run)."""
    rng = np.random.default_rng(seed)
    multi, single = labelled.multi_image(), labelled.single_image()
    if people is not None and people < len(multi):
        searchable = [n for n in multi if len(labelled.identities[n]) >= 3]
        chosen = set(rng.choice(searchable, size=min(people, len(searchable)), replace=False).tolist())
        multi = [n for n in multi if n in chosen]
    if strangers is not None and strangers < len(single):
        single = sorted(rng.choice(single, size=strangers, replace=False).tolist())
    images = labelled.identities
    searched = tuple(i for i, name in enumerate(multi) if len(images[name]) >= 3)
    if not searched or len(single) < 4:
        raise ValueError("the protocol needs people with three images or more and at least 4 strangers")
    return Protocol(
        subjects=tuple(multi),
        captures=tuple(images[name][:-1] for name in multi),
        searched=searched,
        probes=tuple(images[multi[i]][-1] for i in searched),
        strangers=tuple(single),
        stranger_images=tuple(images[name][0] for name in single),
    )


@dataclass(frozen=True)
class Faces:
    """One pipeline's embeddings by image (None: no face), plain or flip-averaged."""

    pipeline: str
    vectors: Mapping[Path, Vector | None]

    def stack(self, paths: Sequence[Path]) -> tuple[Matrix, npt.NDArray[np.bool_]]:
        """(len(paths), d) with zero rows where no face was found, and which rows hold a face."""
        found = np.array([self.vectors[p] is not None for p in paths], dtype=bool)
        dimension = next(v for v in self.vectors.values() if v is not None).shape[0]
        matrix = np.zeros((len(paths), dimension), np.float32)
        for row, path in enumerate(paths):
            vector = self.vectors[path]
            if vector is not None:
                matrix[row] = vector
        return matrix, found


def embed_faces(runner: EmbeddingRunner, images: Sequence[Path]) -> tuple[Faces, Faces]:
    found: dict[str, Mapping[Path, ImageEmbedding]] = {}
    for pipeline in ("onnx", MIRRORED):
        counter = Progress(f"embedding ({pipeline})")
        embedded = runner.embed(pipeline, images, counter)
        counter.finish(f"{embedded.embedded_now:,} embedded now")
        found[pipeline] = embedded.by_path
    plain, mirrored = found["onnx"], found[MIRRORED]
    flipped: dict[Path, Vector | None] = {}
    for path in images:
        a, b = plain[path].vector, mirrored[path].vector
        pair = [v for v in (a, b) if v is not None]
        # Where only the mirror shows a face the probe stays faceless: the flip is an average, not a
        # second chance at detection.
        flipped[path] = None if a is None else mean_template(np.stack(pair), METRIC)
    return Faces("plain", {p: plain[p].vector for p in images}), Faces("flip", flipped)


# -- galleries ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Gallery:
    """What one enrolment puts in the index: template vectors and the subject each belongs to."""

    enrolment: str
    vectors: Matrix
    owner: Ints  # subject index per template
    subjects: int  # subjects enrolled (at least one template)
    per_subject: Ints  # templates per subject (0: failed to enrol)

    @property
    def depth_per_subject(self) -> int:
        return max(1, int(self.per_subject.max()))


def build_gallery(enrolment: str, captures: Sequence[Matrix]) -> Gallery:
    """``captures[s]``: subject s's capture vectors with a face (may be empty: failed to enrol)."""
    rows: list[Vector] = []
    owner: list[int] = []
    for subject, matrix in enumerate(captures):
        if len(matrix) == 0:
            continue
        chosen: list[Vector] = []
        if enrolment == "one":
            chosen = [matrix[0]]
        if enrolment in ("max", "mean+max"):
            chosen.extend(matrix)
        if enrolment in ("mean", "mean+max"):
            chosen.append(mean_template(matrix, METRIC))
        rows.extend(chosen)
        owner.extend([subject] * len(chosen))
    per_subject = np.bincount(np.array(owner, dtype=np.int64), minlength=len(captures)).astype(np.int64)
    return Gallery(
        enrolment,
        np.stack(rows).astype(np.float32),
        np.array(owner, dtype=np.int64),
        int(np.count_nonzero(per_subject)),
        per_subject,
    )


def subject_captures(protocol: Protocol, faces: Faces) -> list[Matrix]:
    """Each enrolled subject's capture vectors, in name order (the one-photo gallery uses the first).

    An image without a face is not a capture (enrolment would refuse it); for the one-photo gallery
    the first image must hold a face, as the one-photo protocol enrols only it.
    """
    out: list[Matrix] = []
    for paths in protocol.captures:
        matrix, found = faces.stack(paths)
        out.append(matrix[found])
    return out


def one_photo_captures(protocol: Protocol, faces: Faces) -> list[Matrix]:
    out: list[Matrix] = []
    for paths in protocol.captures:
        matrix, found = faces.stack(paths[:1])
        out.append(matrix[found])
    return out


def subject_distances(probes: Matrix, gallery: Gallery, subjects: int) -> Floats:
    """(n, subjects) fused distances: each subject's closest template (inf: subject not enrolled)."""
    order = np.argsort(gallery.owner, kind="stable")
    owner = gallery.owner[order]
    a = probes.astype(np.float64)
    b = gallery.vectors[order].astype(np.float64)
    out = np.full((len(probes), subjects), np.inf)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    for begin in range(0, len(a), 2048):  # keeps the (n, templates) table small
        chunk = a[begin : begin + 2048]
        squared = (chunk**2).sum(1)[:, None] - 2.0 * chunk @ b.T + (b**2).sum(1)[None, :]
        table = np.sqrt(np.maximum(squared, 0.0))
        out[begin : begin + 2048, owner[starts]] = np.minimum.reduceat(table, starts, axis=1)
    return out


# -- scores of one configuration ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scored:
    """One configuration's outcome: per mated search and per stranger, and its 1:1 scores."""

    name: str
    pipeline: str
    enrolment: str
    normalisation: str
    mated_rank1: Floats  # normalised top score where the top subject is the right one, else inf
    mated_rank: Ints  # 1-based rank of the right subject (0: absent)
    nonmated_top: Floats  # normalised top score per stranger (inf: no face or empty answer)
    genuine: Floats  # 1:1 per mated search (inf: no face / subject not enrolled)
    impostor: Floats  # (strangers, subjects) 1:1, normalised the same way
    vectors_per_subject: float
    fusion_core_agrees: bool


def config_name(enrolment: str, pipeline: str, normalisation: str) -> str:
    parts = (
        [enrolment]
        + (["flip"] if pipeline == "flip" else [])
        + ([] if normalisation == "none" else [normalisation])
    )
    return " + ".join(parts)


def scales_for(
    normalisation: str,
    probes: Matrix,
    answers_scores: Matrix,
    background: Matrix,
    cohort: int,
) -> Floats:
    if normalisation == "none":
        return np.ones(len(probes))
    if normalisation == "gallery cohort":
        return gallery_cohort_scale(answers_scores, METRIC, cohort)
    return background_cohort_scale(probes, background, METRIC, cohort)


def one_to_one_scales(normalisation: str, distances: Floats, probe_scales: Floats, cohort: int) -> Floats:
    """(n, subjects) scale of each claim: the gallery cohort leaves the claimed subject out."""
    if normalisation != "gallery cohort":
        return np.broadcast_to(probe_scales[:, None], distances.shape)
    take = min(cohort + 1, distances.shape[1])
    nearest = np.sort(np.partition(distances, take - 1, axis=1)[:, :take], axis=1)
    finite = np.where(np.isfinite(nearest), nearest, 0.0)
    count_all = np.isfinite(nearest).sum(1)
    sum_all = finite.sum(1)
    # Claim among the `take` nearest: the others of them; else the first `cohort` of them.
    inside = distances <= nearest[:, take - 1 : take]
    first_c = min(cohort, take)
    sum_first = finite[:, :first_c].sum(1)
    count_first = np.isfinite(nearest[:, :first_c]).sum(1)
    claim = np.where(np.isfinite(distances), distances, 0.0)
    totals = np.where(inside, sum_all[:, None] - claim, sum_first[:, None])
    counts = np.where(inside, count_all[:, None] - np.isfinite(distances), count_first[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def score_config(
    protocol: Protocol,
    faces: Faces,
    gallery: Gallery,
    normalisation: str,
    backgrounds: tuple[Matrix, Matrix],
    cohort: int,
) -> Scored:
    """Search every probe through ``exact_search`` + ``fuse_hits`` and score it; 1:1 from the fused matrix."""
    subjects = len(protocol.subjects)
    probes, probe_found = faces.stack(protocol.probes)
    strangers, stranger_found = faces.stack(protocol.stranger_images)
    everything = np.concatenate([probes, strangers])
    found = np.concatenate([probe_found, stranger_found])
    width = min(cohort + 1, gallery.subjects)
    depth = search_depth(width, gallery.depth_per_subject)
    hits = exact_search(
        gallery.vectors, np.arange(len(gallery.vectors), dtype=np.int64), everything, depth, METRIC
    )
    fused = fuse_hits(hits.ids, hits.scores, gallery.owner, METRIC, limit=width)
    # Two folds of strangers: each normalised by the other half; mated searches alternate.
    fold = np.r_[np.arange(len(probes)) % 2, np.arange(len(strangers)) % 2]
    scales = np.ones(len(everything))
    for side in (0, 1):
        rows = fold == side
        scales[rows] = scales_for(
            normalisation, everything[rows], fused.scores[rows], backgrounds[1 - side], cohort
        )
    normalised = cohort_normalise(fused.scores, scales, METRIC).astype(np.float64)
    normalised[~found] = np.inf

    truth = np.array(protocol.searched, dtype=np.int64)
    mated_subjects = fused.subjects[: len(probes)]
    hit = mated_subjects == truth[:, None]
    rank = np.where(hit.any(1), hit.argmax(1) + 1, 0).astype(np.int64)
    rank[~probe_found] = 0
    mated_rank1 = np.where(rank == 1, normalised[: len(probes), 0], np.inf)
    nonmated_top = normalised[len(probes) :, 0]

    # 1:1 from the full fused matrix (every subject), normalised the same way.
    distances = subject_distances(everything, gallery, subjects)
    distances[~found] = np.inf
    claim_scales = one_to_one_scales(normalisation, distances, scales, cohort)
    with np.errstate(invalid="ignore"):
        one_to_one = np.where(
            np.isfinite(claim_scales) & (claim_scales > 0), distances / claim_scales, np.inf
        )
    genuine = one_to_one[np.arange(len(probes)), truth]
    impostor = one_to_one[len(probes) :]
    # The fusion core's answer against the full matrix: the same top subject and distance.
    top = np.argmin(distances, axis=1)
    agrees = bool(
        np.array_equal(top[found], fused.subjects[found, 0])
        and np.allclose(distances[found, top[found]], fused.scores[found, 0], atol=1e-4)
    )
    return Scored(
        name=config_name(gallery.enrolment, faces.pipeline, normalisation),
        pipeline=faces.pipeline,
        enrolment=gallery.enrolment,
        normalisation=normalisation,
        mated_rank1=mated_rank1,
        mated_rank=rank,
        nonmated_top=nonmated_top,
        genuine=genuine,
        impostor=impostor,
        vectors_per_subject=float(gallery.per_subject[gallery.per_subject > 0].mean()),
        fusion_core_agrees=agrees,
    )


# -- error rates, fast enough to bootstrap ----------------------------------------------------------


def fnir_at(mated_rank1: Floats, nonmated_top: Floats, target: float) -> Floats:
    """FNIR at the most lenient threshold with FPIR <= target, over the last axis (as metrics.fnir_at_fpir).

    The threshold lies just short of the (allowed + 1)-th closest stranger: a mated search is found
    when its rank-1 distance is strictly below that stranger's.
    """
    n = nonmated_top.shape[-1]
    allowed = math.floor(target * n + SLACK)
    if allowed >= n:
        bound = np.full(nonmated_top.shape[:-1], np.inf)
    else:
        bound = np.partition(nonmated_top, allowed, axis=-1)[..., allowed]
    return np.asarray(1.0 - (mated_rank1 < bound[..., None]).mean(axis=-1), dtype=np.float64)


def fpir_bound(nonmated_top: Floats, target: float) -> float:
    """The threshold ``fnir_at`` uses: scores strictly below it are accepted."""
    n = len(nonmated_top)
    allowed = math.floor(target * n + SLACK)
    return math.inf if allowed >= n else float(np.partition(nonmated_top, allowed)[allowed])


@dataclass(frozen=True)
class Bootstrap:
    """Resampling indices shared by every configuration (paired differences)."""

    mated: Ints  # (B, searched)
    strangers: Ints  # (B, strangers)
    subjects: Ints  # (B, subjects)

    @classmethod
    def draw(cls, replicates: int, mated: int, strangers: int, subjects: int, seed: int) -> Bootstrap:
        rng = np.random.default_rng(seed)
        return cls(
            rng.integers(0, mated, size=(replicates, mated)),
            rng.integers(0, strangers, size=(replicates, strangers)),
            rng.integers(0, subjects, size=(replicates, subjects)),
        )


def replicate_figures(scored: Scored, boot: Bootstrap) -> dict[str, Floats]:
    """Per bootstrap replicate: rank-1, FNIR at each FPIR target, FNMR at FMR 1e-3."""
    rank1 = (scored.mated_rank[boot.mated] == 1).mean(axis=1)
    out: dict[str, Floats] = {"rank1": np.asarray(rank1, dtype=np.float64)}
    mated = scored.mated_rank1[boot.mated]
    nonmated = scored.nonmated_top[boot.strangers]
    for target in FPIR_TARGETS:
        out[f"fnir@fpir={target:g}"] = fnir_at(mated, nonmated, target)
    fnmr = np.empty(len(boot.mated))
    genuine = scored.genuine[boot.mated]
    for b in range(len(boot.mated)):
        impostor = scored.impostor[np.ix_(boot.strangers[b], boot.subjects[b])].reshape(1, -1)
        finite = impostor[np.isfinite(impostor)]  # a subject that failed to enrol makes no comparison
        fnmr[b] = fnir_at(genuine[b][None, :], finite[None, :], FMR_TARGET)[0]
    out[f"fnmr@fmr={FMR_TARGET:g}"] = fnmr
    return out


def point_figures(scored: Scored) -> dict[str, object]:
    """Point estimates through evaluation.metrics (the harness's conventions), with their counts."""
    open_set = metrics.OpenSetScores(scored.mated_rank1, scored.mated_rank, scored.nonmated_top, False)
    figures: dict[str, object] = {"rank1": metrics.rank_rate(open_set, 1)}
    for target in FPIR_TARGETS:
        point = metrics.fnir_at_fpir(open_set, target)
        figures[f"fnir@fpir={target:g}"] = point.fnir
        figures[f"fnir@fpir={target:g}_counts"] = {
            "misses": point.misses,
            "mated_searches": point.mated_searches,
            "false_positives": point.false_positives,
            "nonmated_searches": point.nonmated_searches,
            "threshold": point.threshold,
            "supported": point.supported,
        }
    genuine = scored.genuine[np.isfinite(scored.genuine)]
    impostor = scored.impostor[np.isfinite(scored.impostor)]
    missing = len(scored.genuine) - len(genuine)
    verification = metrics.fnmr_at_fmr(metrics.VerificationScores(genuine, impostor, False), FMR_TARGET)
    # A mated probe without a face (or an unenrolled subject) cannot be accepted: a false non-match.
    fnmr = (verification.false_non_matches + missing) / len(scored.genuine)
    figures[f"fnmr@fmr={FMR_TARGET:g}"] = fnmr
    figures[f"fnmr@fmr={FMR_TARGET:g}_counts"] = {
        "false_non_matches": verification.false_non_matches + missing,
        "genuine": len(scored.genuine),
        "false_matches": verification.false_matches,
        "impostor": verification.impostor_comparisons,
        "threshold": verification.threshold,
    }
    return figures


def _float(value: object) -> float:
    assert isinstance(value, float | int)
    return float(value)


def comparisons(names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs worth a paired interval: flip against its twin, each normalisation against none and
    against each other, and each multi-capture enrolment against the mean template."""
    pairs: list[tuple[str, str]] = []
    for pipeline in PIPELINES:
        for enrolment in ENROLMENTS:
            for normalisation in NORMALISATIONS:
                name = config_name(enrolment, pipeline, normalisation)
                if pipeline == "flip":
                    pairs.append((name, config_name(enrolment, "plain", normalisation)))
                if normalisation != "none":
                    pairs.append((name, config_name(enrolment, pipeline, "none")))
                if normalisation == "background cohort":
                    pairs.append((name, config_name(enrolment, pipeline, "gallery cohort")))
                if enrolment in ("max", "mean+max"):
                    pairs.append((name, config_name("mean", pipeline, normalisation)))
    return [(a, b) for a, b in pairs if a in names and b in names]


def paired_difference(
    first: str,
    second: str,
    points: Mapping[str, Mapping[str, object]],
    replicates: Mapping[str, Mapping[str, Floats]],
) -> dict[str, object]:
    """first minus second on each error rate, with the 95 % interval of the paired bootstrap."""
    entry: dict[str, object] = {"first": first, "second": second}
    for key in [f"fnir@fpir={t:g}" for t in FPIR_TARGETS] + [f"fnmr@fmr={FMR_TARGET:g}"]:
        entry[key] = _float(points[first][key]) - _float(points[second][key])
        entry[f"{key}_ci95"] = interval(replicates[first][key] - replicates[second][key])
    return entry


def interval(values: Floats) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def calibration_honesty(
    nonmated_top: Floats, splits: int, seed: int, target: float = 0.01
) -> dict[str, object]:
    """Threshold for ``target`` set on a random half of the strangers, FPIR measured on the other half,
    over ``splits`` random halvings."""
    rng = np.random.default_rng(seed)
    n = len(nonmated_top)
    half = n // 2
    measured = np.empty(splits)
    for s in range(splits):
        order = rng.permutation(n)
        chosen, held = nonmated_top[order[:half]], nonmated_top[order[half:]]
        measured[s] = float((held < fpir_bound(chosen, target)).mean())
    within = (measured >= target / 2) & (measured <= target * 2)
    return {
        "target_fpir": target,
        "strangers_choosing": half,
        "strangers_held_back": n - half,
        "false_positives_allowed_when_choosing": math.floor(target * half + SLACK),
        "splits": splits,
        "held_back_fpir_mean": float(measured.mean()),
        "held_back_fpir_median": float(np.median(measured)),
        "held_back_fpir_p5_p95": [float(np.percentile(measured, 5)), float(np.percentile(measured, 95))],
        "share_within_factor_2": float(within.mean()),
    }


# -- gallery size ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FusedMatrix:
    """Fused distances of every probe and stranger to every subject of a gallery (real then synthetic)."""

    mated: Floats  # (searched, subjects)
    strangers: Floats  # (strangers, subjects)
    real_subjects: int


def synthetic_subjects(captures: Sequence[Matrix], count: int, seed: int) -> list[Matrix]:
    """``count`` synthetic subjects: Gaussian centres and capture noise fitted to real enrolled captures.

    Within-subject covariance from the residuals of subjects with two captures or more (unbiased);
    between-subject covariance = all captures' covariance less it (eigenvalues clipped at 0); captures
    per subject drawn from the real subjects' counts. The harness's distractors are drawn from one
    Gaussian fitted to real embeddings; this one also gives each synthetic person several captures.
    """
    rng = np.random.default_rng(seed)
    real = [m.astype(np.float64) for m in captures if len(m)]
    data = np.concatenate(real)
    residuals = np.concatenate(
        [(m - m.mean(0)) * math.sqrt(len(m) / (len(m) - 1)) for m in real if len(m) >= 2]
    )
    within = residuals.T @ residuals / len(residuals)
    total = np.cov(data, rowvar=False)
    values, vectors = np.linalg.eigh(total - within)
    between = (vectors * np.clip(values, 0.0, None)) @ vectors.T
    counts = rng.choice(np.array([len(m) for m in real]), size=count)
    centres = rng.multivariate_normal(data.mean(0), between, size=count, method="eigh")
    noise = rng.multivariate_normal(np.zeros(data.shape[1]), within, size=int(counts.sum()), method="eigh")
    out: list[Matrix] = []
    start = 0
    for centre, m in zip(centres, counts, strict=True):
        out.append((centre + noise[start : start + m]).astype(np.float32))
        start += m
    return out


def fused_matrix(
    protocol: Protocol, faces: Faces, enrolment: str, captures: Sequence[Matrix], synthetic: Sequence[Matrix]
) -> FusedMatrix:
    base = one_photo_captures(protocol, faces) if enrolment == "one" else list(captures)
    gallery = build_gallery(enrolment, [*base, *synthetic])
    probes, probe_found = faces.stack(protocol.probes)
    strangers, stranger_found = faces.stack(protocol.stranger_images)
    total = len(base) + len(synthetic)
    mated = subject_distances(probes, gallery, total)
    mated[~probe_found] = np.inf
    others = subject_distances(strangers, gallery, total)
    others[~stranger_found] = np.inf
    return FusedMatrix(mated, others, len(base))


def top_answers(distances: Floats, columns: Ints, width: int) -> tuple[Floats, Ints]:
    """The ``width`` closest subjects among ``columns`` per row (distances and subject indices)."""
    table = distances[:, columns]
    take = min(width, len(columns))
    part = np.argpartition(table, take - 1, axis=1)[:, :take]
    values = np.take_along_axis(table, part, axis=1)
    order = np.argsort(values, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), columns[np.take_along_axis(part, order, axis=1)]


def size_point(
    matrix: FusedMatrix,
    protocol: Protocol,
    draws: list[Ints],
    normalisation: str,
    scales: tuple[Floats, Floats],
    cohort: int,
    transfer_bounds: Sequence[tuple[Ints, float]],
) -> dict[str, object]:
    """Pooled over the draws: rank-1, FNIR at FPIR 0.01 (threshold at this size), and FPIR at a
    threshold chosen on the full real gallery (``transfer_bounds``: held-back strangers and bound)."""
    searched = np.array(protocol.searched, dtype=np.int64)
    mated_scores: list[Floats] = []
    hits: list[npt.NDArray[np.bool_]] = []
    stranger_tops: list[Floats] = []
    for columns in draws:
        rows = np.flatnonzero(np.isin(searched, columns))
        if len(rows):
            normalised, who = normalised_answers(
                matrix.mated[rows], columns, normalisation, scales[0][rows], cohort
            )
            right = who[:, 0] == searched[rows]
            mated_scores.append(np.where(right, normalised[:, 0], np.inf))
            hits.append(right)
        tops, _ = normalised_answers(matrix.strangers, columns, normalisation, scales[1], cohort)
        stranger_tops.append(tops[:, 0])
    nonmated = np.stack(stranger_tops)  # (draws, strangers)
    point: dict[str, object] = {
        "subjects": len(draws[0]),
        "draws": len(draws),
        "mated_searches": int(sum(len(m) for m in mated_scores)),
        "nonmated_searches": int(nonmated.size),
    }
    if mated_scores:
        point["rank1"] = float(np.concatenate(hits).mean())
        point["fnir@fpir=0.01"] = float(fnir_at(np.concatenate(mated_scores), nonmated.reshape(-1), 0.01))
    if transfer_bounds:
        measured = [float((nonmated[:, held] < bound).mean()) for held, bound in transfer_bounds]
        point["fpir_at_threshold_from_full_gallery"] = float(np.mean(measured))
    point["held_back_fpir_calibrated_at_this_size"] = calibration_honesty(nonmated.reshape(-1), 50, 0)[
        "held_back_fpir_mean"
    ]
    return point


def normalised_answers(
    distances: Floats, columns: Ints, normalisation: str, scales: Floats, cohort: int
) -> tuple[Floats, Ints]:
    """Each row's closest ``cohort + 1`` subjects among ``columns``, normalised, and who they are."""
    values, who = top_answers(distances, columns, cohort + 1)
    if normalisation == "gallery cohort":
        scales = gallery_cohort_scale(values, METRIC, cohort)
    return cohort_normalise(values, scales, METRIC).astype(np.float64), who


# -- cost -----------------------------------------------------------------------------------------


def percentile_ms(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000.0, q))


def matcher_latency(
    gallery: Gallery,
    queries: Matrix,
    background: Matrix,
    cohort: int,
    work_dir: Path | None,
) -> dict[str, object]:
    """Identify one probe at a time through the real Matcher, then fuse and normalise each answer."""
    width = min(cohort + 1, gallery.subjects)
    depth = search_depth(width, gallery.depth_per_subject, MAX_TOP_K)
    references = [f"s{owner:06d}-t{i:07d}" for i, owner in enumerate(gallery.owner.tolist())]
    code_of = {reference: i for i, reference in enumerate(references)}
    identify_s: list[float] = []
    fuse_s: list[float] = []
    gallery_norm_s: list[float] = []
    background_norm_s: list[float] = []
    short = 0
    set_search_threads(1)  # as each server worker does (grpc_host): OpenMP threads only oversubscribe
    with tempfile.TemporaryDirectory(prefix="fusion-", dir=work_dir) as folder:
        key = os.urandom(32)
        template_store = store.TemplateStore.open(Path(folder) / "db.sqlite3", store.TemplateSealer(key))
        matcher = Matcher(template_store, Path(folder) / "snapshots", key[::-1])
        try:
            matcher.load()
            matcher.create_gallery(
                GallerySpec("fusion", GalleryPurpose.WATCHLIST, "dlib-resnet-v1", 128, METRIC, 0.5)
            )
            for start in range(0, len(references), 5000):
                chunk = list(
                    zip(references[start : start + 5000], gallery.vectors[start : start + 5000], strict=True)
                )
                refused = [e for e in matcher.insert_many("fusion", chunk) if e is not None]
                if refused:
                    raise RuntimeError(f"the matcher refused a template: {refused[0]}")
            for i, probe in enumerate(queries):
                began = time.perf_counter()
                (answer,) = matcher.identify("fusion", probe[None, :], top_k=depth)
                identified = time.perf_counter()
                ids = np.array([[code_of[c.reference_id] for c in answer.candidates]], dtype=np.int64)
                scores = np.array([[c.score for c in answer.candidates]], dtype=np.float32)
                fused = fuse_hits(ids, scores, gallery.owner, METRIC, limit=width)
                collapsed = time.perf_counter()
                cohort_normalise(fused.scores, gallery_cohort_scale(fused.scores, METRIC, cohort), METRIC)
                normalised = time.perf_counter()
                cohort_normalise(
                    fused.scores, background_cohort_scale(probe[None, :], background, METRIC, cohort), METRIC
                )
                done = time.perf_counter()
                if i < 10:  # warm-up: caches, first-call allocations
                    continue
                short += int(fused.counts()[0] < width)
                identify_s.append(identified - began)
                fuse_s.append(collapsed - identified)
                gallery_norm_s.append(normalised - collapsed)
                background_norm_s.append(done - normalised)
        finally:
            matcher.close()
            template_store.close()
    return {
        "subjects": gallery.subjects,
        "templates": len(gallery.vectors),
        "top_k_asked": depth,
        "queries": len(identify_s),
        "answers_short_of_cohort": short,
        "identify_p50_ms": percentile_ms(identify_s, 50),
        "identify_p95_ms": percentile_ms(identify_s, 95),
        "fuse_p50_ms": percentile_ms(fuse_s, 50),
        "gallery_cohort_p50_ms": percentile_ms(gallery_norm_s, 50),
        "background_cohort_p50_ms": percentile_ms(background_norm_s, 50),
        "background_faces": len(background),
    }


def embedding_cost(runner: EmbeddingRunner, images: Sequence[Path]) -> dict[str, object]:
    """Milliseconds per image through the ONNX pipeline, and through it again on the mirror (the flip)."""
    limits = ImageLimits()
    plain = runner.embedder("onnx")
    mirrored = runner.embedder(MIRRORED)
    timings: dict[str, list[float]] = {"plain": [], "mirror": []}
    for path in images:
        pixels = decode_image(path.read_bytes(), limits)
        for name, embedder in (("plain", plain), ("mirror", mirrored)):
            began = time.perf_counter()
            with contextlib.suppress(NoFaceFound):  # a faceless image costs the detector all the same
                embedder.embed(pixels, FaceSelection.LARGEST)
            timings[name].append(time.perf_counter() - began)
    plain_ms = percentile_ms(timings["plain"], 50)
    mirror_ms = percentile_ms(timings["mirror"], 50)
    return {
        "images": len(images),
        "embed_p50_ms": plain_ms,
        "embed_with_flip_p50_ms": plain_ms + mirror_ms,
        "flip_cost_ratio": (plain_ms + mirror_ms) / plain_ms,
    }


# -- the case for the product test ------------------------------------------------------------------


def concrete_cases(protocol: Protocol, faces: Faces, captures: Sequence[Matrix]) -> list[dict[str, object]]:
    """Searched people missed by their first photo alone (1:1 distance > 0.5) but within 0.5 of both
    their best capture and their mean template, best margin first."""
    probes, probe_found = faces.stack(protocol.probes)
    cases: list[dict[str, object]] = []
    one = build_gallery("one", one_photo_captures(protocol, faces))
    multi = {e: build_gallery(e, captures) for e in ("max", "mean")}
    subjects = len(protocol.subjects)
    one_d = subject_distances(probes, one, subjects)
    multi_d = {e: subject_distances(probes, g, subjects) for e, g in multi.items()}
    for row, subject in enumerate(protocol.searched):
        if not probe_found[row]:
            continue
        single = float(one_d[row, subject])
        fused = {e: float(d[row, subject]) for e, d in multi_d.items()}
        ranks = {e: int(np.argmin(d[row]) == subject) for e, d in multi_d.items()}
        if (
            single <= WATCHLIST_THRESHOLD
            or max(fused.values()) > WATCHLIST_THRESHOLD
            or not all(ranks.values())
        ):
            continue
        margin = min(single - WATCHLIST_THRESHOLD, WATCHLIST_THRESHOLD - max(fused.values()))
        cases.append(
            {
                "person": protocol.subjects[subject],
                "enrolled_files": [p.name for p in protocol.captures[subject]],
                "probe_file": protocol.probes[row].name,
                "one_photo_distance": single,
                "one_photo_rank1": bool(np.argmin(one_d[row]) == subject),
                "missed_by_one_photo_at_0.6": single > ONE_TO_ONE_THRESHOLD,
                "missed_by_one_photo_at_0.5": True,
                "max_score_distance": fused["max"],
                "mean_template_distance": fused["mean"],
                "margin": margin,
            }
        )
    return sorted(cases, key=lambda c: -float(c["margin"]))  # type: ignore[arg-type]


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Settings:
    faces: Path
    model_dir: Path
    cache_dir: Path | None
    out: Path
    people: int | None
    strangers: int | None
    cohort: int
    bootstrap: int
    splits: int
    sizes: list[int]
    latency_synthetic: int
    latency_queries: int
    embed_timing: int
    seed: int
    work_dir: Path | None = None
    argv: list[str] = field(default_factory=list)


def parse(argv: Sequence[str] | None) -> Settings:
    default_faces = Path(os.environ.get("SAFEPASSAGE_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--faces", type=Path, default=default_faces, help="the shared faces folder (lfw/ in it)"
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache ('' for none)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--people", type=int, help="at most this many searched people (seeded; quick runs)")
    parser.add_argument("--strangers", type=int, help="at most this many strangers (seeded; quick runs)")
    parser.add_argument("--cohort", type=int, default=10, help="cohort size c (default 10)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--splits", type=int, default=200, help="random halvings for calibration honesty")
    parser.add_argument(
        "--sizes", default="10,30,100,300,1000,10000", help="gallery sizes (above the real: synthetic)"
    )
    parser.add_argument(
        "--latency-synthetic",
        type=int,
        default=10000,
        help="subjects of the synthetic latency gallery (0: skip)",
    )
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--embed-timing", type=int, default=30, help="images timed for the flip's cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, help="where temporary stores go (default the system's)")
    args = parser.parse_args(argv)
    return Settings(
        faces=args.faces,
        model_dir=args.model_dir,
        cache_dir=args.cache_dir if str(args.cache_dir) else None,
        out=args.out,
        people=args.people,
        strangers=args.strangers,
        cohort=args.cohort,
        bootstrap=args.bootstrap,
        splits=args.splits,
        sizes=sorted({int(s) for s in args.sizes.split(",") if s.strip()}),
        latency_synthetic=args.latency_synthetic,
        latency_queries=args.latency_queries,
        embed_timing=args.embed_timing,
        seed=args.seed,
        work_dir=args.work_dir,
        argv=list(sys.argv[1:] if argv is None else argv),
    )


def machine() -> dict[str, object]:
    import onnxruntime

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def run(settings: Settings) -> dict[str, object]:
    started = time.perf_counter()
    machine_info = machine()
    folder = settings.faces / "lfw" if (settings.faces / "lfw").is_dir() else settings.faces
    labelled = LabelledSet.from_folder(folder)
    runner = EmbeddingRunner(settings.model_dir, settings.cache_dir)
    runner.register(MIRRORED, MirroredEmbedder(runner.embedder("onnx")))
    protocol = make_protocol(labelled, settings.people, settings.strangers, settings.seed)
    plain, flip = embed_faces(runner, protocol.images())
    if runner.unreadable:
        labelled = labelled.without(set(runner.unreadable))
        protocol = make_protocol(labelled, settings.people, settings.strangers, settings.seed)
    log(
        f"{len(protocol.subjects)} enrolled, {len(protocol.searched)} searched,"
        f" {len(protocol.strangers)} strangers"
    )

    cohort = settings.cohort
    variants = {"plain": plain, "flip": flip}
    captures = {name: subject_captures(protocol, faces) for name, faces in variants.items()}
    galleries = {
        name: {
            e: build_gallery(e, one_photo_captures(protocol, faces) if e == "one" else captures[name])
            for e in ENROLMENTS
        }
        for name, faces in variants.items()
    }
    half = [np.arange(len(protocol.strangers)) % 2 == side for side in (0, 1)]
    backgrounds: dict[str, tuple[Matrix, Matrix]] = {}
    for name, faces in variants.items():
        stranger_vectors = faces.stack(protocol.stranger_images)[0]
        backgrounds[name] = (stranger_vectors[half[0]], stranger_vectors[half[1]])

    # Every configuration: point figures, bootstrap replicates, calibration honesty.
    boot = Bootstrap.draw(
        settings.bootstrap,
        len(protocol.searched),
        len(protocol.strangers),
        len(protocol.subjects),
        settings.seed,
    )
    scored: dict[str, Scored] = {}
    replicates: dict[str, dict[str, Floats]] = {}
    for pipeline in PIPELINES:
        for enrolment in ENROLMENTS:
            for normalisation in NORMALISATIONS:
                result = score_config(
                    protocol,
                    variants[pipeline],
                    galleries[pipeline][enrolment],
                    normalisation,
                    backgrounds[pipeline],
                    cohort,
                )
                scored[result.name] = result
                replicates[result.name] = replicate_figures(result, boot)
        log(f"scored the {pipeline} configurations")
    baseline = config_name("one", "plain", "none")
    configurations = []
    for name, result in scored.items():
        figures = point_figures(result)
        entry: dict[str, object] = {
            "name": name,
            "enrolment": result.enrolment,
            "flip": result.pipeline == "flip",
            "normalisation": result.normalisation,
            "vectors_per_subject": result.vectors_per_subject,
            "bytes_per_subject": result.vectors_per_subject * 128 * 4,
            "fusion_core_agrees_with_full_matrix": result.fusion_core_agrees,
            **figures,
        }
        for key, values in replicates[name].items():
            entry[f"{key}_ci95"] = interval(values)
        for target in FPIR_TARGETS:
            key = f"fnir@fpir={target:g}"
            difference = replicates[name][key] - replicates[baseline][key]
            entry[f"{key}_minus_baseline"] = _float(figures[key]) - _float(
                point_figures(scored[baseline])[key]
            )
            entry[f"{key}_minus_baseline_ci95"] = interval(difference)
        entry["calibration"] = calibration_honesty(result.nonmated_top, settings.splits, settings.seed)
        configurations.append(entry)
    points = {name: point_figures(result) for name, result in scored.items()}
    paired = [
        paired_difference(first, second, points, replicates) for first, second in comparisons(list(scored))
    ]

    # Gallery sizes: real draws, then synthetic subjects (labelled as such).
    gallery_sizes = gallery_size_sweep(protocol, variants, captures, backgrounds, settings)

    # Cost.
    rng = np.random.default_rng(settings.seed)
    latency: dict[str, object] = {}
    for pipeline in ("plain",):
        faces = variants[pipeline]
        probes = np.concatenate([faces.stack(protocol.probes)[0], faces.stack(protocol.stranger_images)[0]])
        queries = probes[
            rng.choice(len(probes), size=min(settings.latency_queries, len(probes)), replace=False)
        ]
        background = backgrounds[pipeline][0]
        real: dict[str, object] = {}
        synthetic: dict[str, object] = {}
        extra = (
            synthetic_subjects(
                captures[pipeline],
                max(0, settings.latency_synthetic - len(protocol.subjects)),
                settings.seed + 1,
            )
            if settings.latency_synthetic
            else []
        )
        for enrolment in ENROLMENTS:
            real[enrolment] = matcher_latency(
                galleries[pipeline][enrolment], queries, background, cohort, settings.work_dir
            )
            if extra:
                base = one_photo_captures(protocol, faces) if enrolment == "one" else captures[pipeline]
                big = build_gallery(enrolment, [*base, *extra])
                synthetic[enrolment] = matcher_latency(big, queries, background, cohort, settings.work_dir)
            log(f"latency: {enrolment}")
        latency = {"real_gallery": real, "synthetic_gallery": synthetic}
    sample = list(protocol.probes[: settings.embed_timing])
    embedding = embedding_cost(runner, sample)

    cases = concrete_cases(protocol, plain, captures["plain"])
    return {
        "benchmark": "fusion_comparison",
        "issue": 19,
        "command": " ".join(
            ["uv run python benchmarks/fusion_comparison.py", *map(shlex.quote, settings.argv)]
        ),
        "machine": machine_info,
        "settings": {
            "faces": str(folder),
            "pipeline": "onnx (the service's: CenterFace, 5 points, dlib ResNet ONNX), largest face",
            "metric": METRIC.value,
            "cohort_size": cohort,
            "bootstrap_replicates": settings.bootstrap,
            "bootstrap_over": "searched people, strangers, (1:1 impostors) gallery subjects; gallery fixed",
            "calibration_splits": settings.splits,
            "seed": settings.seed,
            "background": "the other half of the strangers (two folds: a stranger is never in its own)",
            "flip": "embeddings of the image and of its mirror (the decoded image mirrored before the"
            " pipeline), averaged by fusion.mean_template (rescaled to their mean norm)",
        },
        "data": {
            "enrolled_subjects": len(protocol.subjects),
            "searched_subjects": len(protocol.searched),
            "strangers": len(protocol.strangers),
            "captures_per_enrolled_subject_mean": float(np.mean([len(c) for c in protocol.captures])),
            "captures_per_searched_subject_mean": float(
                np.mean([len(protocol.captures[i]) for i in protocol.searched])
            ),
            "no_face": {
                name: sum(v is None for v in faces.vectors.values()) for name, faces in variants.items()
            },
            "unreadable": {str(p): why for p, why in runner.unreadable.items()},
            "fpir_0.01_rests_on_false_positives": math.floor(0.01 * len(protocol.strangers) + SLACK),
            "fpir_0.003_rests_on_false_positives": math.floor(0.003 * len(protocol.strangers) + SLACK),
            "fmr_1e-3_impostor_comparisons": len(protocol.strangers) * len(protocol.subjects),
        },
        "baseline": baseline,
        "configurations": configurations,
        "paired_differences": paired,
        "gallery_sizes": gallery_sizes,
        "latency": latency,
        "embedding": embedding,
        "cases_missed_by_one_photo_found_with_all": cases,
        "seconds": time.perf_counter() - started,
    }


def gallery_size_sweep(
    protocol: Protocol,
    variants: Mapping[str, Faces],
    captures: Mapping[str, list[Matrix]],
    backgrounds: Mapping[str, tuple[Matrix, Matrix]],
    settings: Settings,
) -> list[dict[str, object]]:
    cohort = settings.cohort
    real = len(protocol.subjects)
    rng = np.random.default_rng(settings.seed)
    halves = [rng.permutation(len(protocol.strangers)) for _ in range(50)]
    splits = [(order[: len(order) // 2], order[len(order) // 2 :]) for order in halves]
    synthetic_count = max([s for s in settings.sizes if s > real], default=real) - real
    out: list[dict[str, object]] = []
    for pipeline, faces in variants.items():
        probes = faces.stack(protocol.probes)[0]
        strangers = faces.stack(protocol.stranger_images)[0]
        fold_p = np.arange(len(probes)) % 2
        fold_s = np.arange(len(strangers)) % 2
        bg = backgrounds[pipeline]
        probe_bg = np.where(
            fold_p == 0,
            background_cohort_scale(probes, bg[1], METRIC, cohort),
            background_cohort_scale(probes, bg[0], METRIC, cohort),
        )
        stranger_bg = np.where(
            fold_s == 0,
            background_cohort_scale(strangers, bg[1], METRIC, cohort),
            background_cohort_scale(strangers, bg[0], METRIC, cohort),
        )
        extra = (
            synthetic_subjects(captures[pipeline], synthetic_count, settings.seed + 1)
            if synthetic_count
            else []
        )
        for enrolment in ENROLMENTS:
            matrix = fused_matrix(protocol, faces, enrolment, captures[pipeline], extra)
            for normalisation in NORMALISATIONS:
                ones = (np.ones(len(probes)), np.ones(len(strangers)))
                scales = (probe_bg, stranger_bg) if normalisation == "background cohort" else ones
                # Thresholds chosen on half the strangers at the full real gallery, for the transfer.
                tops = normalised_answers(
                    matrix.strangers, np.arange(real, dtype=np.int64), normalisation, scales[1], cohort
                )[0][:, 0]
                transfer = [(held, fpir_bound(tops[chosen], 0.01)) for chosen, held in splits]
                points = []
                for size in settings.sizes:
                    if size <= real:
                        count = max(5, math.ceil(2000 / size)) if size < real else 1
                        draws = [
                            np.sort(rng.choice(real, size=size, replace=False)).astype(np.int64)
                            for _ in range(count)
                        ]
                        kind = "real"
                    else:
                        draws = [np.arange(min(size, real + len(extra)), dtype=np.int64)]
                        kind = "real + synthetic"
                    point = size_point(matrix, protocol, draws, normalisation, scales, cohort, transfer)
                    point["gallery"] = kind
                    point["synthetic_subjects"] = max(0, len(draws[0]) - real)
                    points.append(point)
                out.append(
                    {
                        "name": config_name(enrolment, pipeline, normalisation),
                        "enrolment": enrolment,
                        "flip": pipeline == "flip",
                        "normalisation": normalisation,
                        "points": points,
                    }
                )
        log(f"gallery sizes: {pipeline}")
    return out


# -- the report -----------------------------------------------------------------------------------


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def pct_ci(entry: Mapping[str, Any], key: str) -> str:
    low, high = entry[f"{key}_ci95"]
    return f"{pct(entry[key])} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown(report: Mapping[str, Any]) -> str:
    """The report's tables (the JSON holds more: counts, thresholds, calibration per size)."""
    data = report["data"]
    lines = [
        f"Shared LFW subset, ONNX pipeline, largest face: {data['enrolled_subjects']} enrolled subjects,"
        f" {data['searched_subjects']} searched with their last photo, {data['strangers']} strangers"
        f" (FPIR 0.01 rests on {data['fpir_0.01_rests_on_false_positives']} false positives, 0.003 on"
        f" {data['fpir_0.003_rests_on_false_positives']}: indicative only). 95 % bootstrap intervals.",
        "",
        "| configuration | vectors/subject | rank-1 | FNIR @ FPIR 0.01 | vs one photo | FNIR @ FPIR 0.003 |"
        " FNMR @ FMR 1e-3 | held-out FPIR (target 1%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["configurations"]:
        low, high = entry["fnir@fpir=0.01_minus_baseline_ci95"]
        calibration = entry["calibration"]
        lines.append(
            f"| {entry['name']} | {entry['vectors_per_subject']:.2f} | {pct_ci(entry, 'rank1')} |"
            f" {pct_ci(entry, 'fnir@fpir=0.01')} | {100 * entry['fnir@fpir=0.01_minus_baseline']:+.1f}"
            f" [{100 * low:+.1f}, {100 * high:+.1f}] | {pct_ci(entry, 'fnir@fpir=0.003')} |"
            f" {pct_ci(entry, 'fnmr@fmr=0.001')} | {pct(calibration['held_back_fpir_mean'])}"
            f" ({100 * calibration['share_within_factor_2']:.0f}% of splits within x2) |"
        )
    sizes = report["gallery_sizes"]
    if sizes:
        header = [f"{p['subjects']}{'*' if p['synthetic_subjects'] else ''}" for p in sizes[0]["points"]]
        lines += [
            "",
            "FNIR @ FPIR 0.01 by gallery size (threshold set at each size; * = with synthetic subjects),"
            " then FPIR at the threshold set on half the strangers at the full real gallery (target 1%):",
            "",
            "| configuration | "
            + " | ".join(header)
            + " | "
            + " | ".join(f"FPIR@{h}" for h in header)
            + " |",
            "|---|" + "---|" * (2 * len(header)),
        ]
        for entry in sizes:
            fnir = [pct(p["fnir@fpir=0.01"]) if "fnir@fpir=0.01" in p else "-" for p in entry["points"]]
            fpir = [pct(p["fpir_at_threshold_from_full_gallery"]) for p in entry["points"]]
            lines.append(f"| {entry['name']} | " + " | ".join(fnir) + " | " + " | ".join(fpir) + " |")
    latency = report["latency"]
    if latency:
        lines += [
            "",
            "Cost per query through the real Matcher (one probe per identify; captures as separate"
            " references, collapsed by fusion.fuse_hits):",
            "",
            "| enrolment | gallery | templates | top-k asked | identify p50 / p95 ms | fuse p50 ms |"
            " gallery cohort p50 ms | background cohort p50 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for where, results in latency.items():
            for enrolment, m in results.items():
                lines.append(
                    f"| {enrolment} | {m['subjects']} subjects ({where.replace('_', ' ')}) |"
                    f" {m['templates']} | {m['top_k_asked']} |"
                    f" {m['identify_p50_ms']:.2f} / {m['identify_p95_ms']:.2f} | {m['fuse_p50_ms']:.3f} |"
                    f" {m['gallery_cohort_p50_ms']:.3f} | {m['background_cohort_p50_ms']:.3f} |"
                )
    shown = [
        ("mean + background cohort", "mean"),
        ("mean + background cohort", "mean + gallery cohort"),
        ("mean + flip + background cohort", "mean + background cohort"),
        ("mean+max + background cohort", "mean + background cohort"),
        ("max + background cohort", "mean + background cohort"),
        ("mean + flip", "mean"),
    ]
    chosen = [d for d in report.get("paired_differences", []) if (d["first"], d["second"]) in shown]
    if chosen:
        lines += [
            "",
            "Paired differences (first minus second, percentage points, 95 % paired bootstrap interval):",
            "",
            "| first | second | FNIR @ FPIR 0.01 | FNIR @ FPIR 0.003 | FNMR @ FMR 1e-3 |",
            "|---|---|---|---|---|",
        ]
        for d in chosen:
            cells = []
            for key in ("fnir@fpir=0.01", "fnir@fpir=0.003", "fnmr@fmr=0.001"):
                low, high = d[f"{key}_ci95"]
                cells.append(f"{100 * d[key]:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
            lines.append(f"| {d['first']} | {d['second']} | " + " | ".join(cells) + " |")
    embedding = report["embedding"]
    lines += [
        "",
        f"Embedding (p50 over {embedding['images']} images): {embedding['embed_p50_ms']:.1f} ms,"
        f" with the flip {embedding['embed_with_flip_p50_ms']:.1f} ms (x{embedding['flip_cost_ratio']:.2f}).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    report = run(settings)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = settings.out.with_name(settings.out.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    temporary.replace(settings.out)
    print(markdown(report))
    log(f"wrote {settings.out} in {report['seconds']:.0f} s")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


if __name__ == "__main__":
    raise SystemExit(main())
