"""The evaluation run: both pipelines through verification, identification, quality and cohorts.

    uv run safepassage evaluate [--faces DIR] [--pairs FILE] [--cohorts FILE] [--out-dir DIR] [--limit N]
    uv run python -m safepassage.evaluation.run ...   (the same)

For each pipeline (ONNX, face_recognition) on the same labelled images:

- 1:1 verification: every genuine pair within an identity, every impostor pair across identities
  (sampled with a seed above MAX_IMPOSTORS); EER, FNMR at FMR 1e-2/1e-3/1e-4 with their support;
  LFW accuracy by cross-validation over the pairs file's folds.
- 1:N open-set identification through the service's matcher (identification.py): FNIR at FPIR 0.003
  and 0.01, rank-1 and rank-10, at each gallery size as distractors are added (real ones, then
  synthetic ones to 2 000 and 5 000, drawn dotted; headline figures use the real gallery only).
- Quality: the same error rates per quartile of the edge's quality score, at the whole set's
  thresholds (FMR 1e-3, FPIR 0.01), so a quartile's rates say what a deployment would see for it.
- Cohorts (with a cohorts CSV): every figure per group at the same thresholds, worst/best ratio.
  (The comparisons and both splits: breakdown.py. The report folder: report.py and summary.py.)

Images where a pipeline finds no face are failures to acquire (ISO/IEC 19795-1), and never leave a
figure without a word: the per-comparison 1:1 rates leave their pairs out and the whole-system
(generalised) rates beside them count those pairs as non-matches (acquisition.py); in 1:N they count as
misses (identification.py), with per-search rates beside; LFW pairs with such an image count as wrong.
With two or more pipelines each is also scored on the photos every one of them acquired, the same pairs
and searches for all (common_set.py), so a pipeline that fails on the hard photos is not shown as better.

A file that is not an image the service reads is listed in the report (file and why) and left out; the
run goes on, exits 0, and says on stderr how many were skipped. Embedding shows its progress on stderr
(progress.py). Without --out-dir the report goes to a new folder ``evaluation-report/<UTC time>/`` in the
current directory (embeddings cached in ``evaluation-report/embeddings/``), never over tracked files;
``--out-dir DIR`` writes (and caches) there, as ``--out-dir benchmarks/results/evaluation`` refreshes
the report the READMEs quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from safepassage.evaluation import intervals, metrics
from safepassage.evaluation.acquisition import generalised_point, per_search_point
from safepassage.evaluation.breakdown import MAX_IMPOSTORS, cohort_figures, comparisons, quality_bands
from safepassage.evaluation.capture_comparison import compare_captures
from safepassage.evaluation.common_set import acquired_by_every, same_image_figures
from safepassage.evaluation.data import LabelledSet, Pairs, read_cohorts, read_pairs
from safepassage.evaluation.embed import PIPELINES, EmbeddingRunner, Embeddings
from safepassage.evaluation.identification import (
    IdentificationProtocol,
    default_gallery_sizes,
    identify,
    make_protocol,
)
from safepassage.evaluation.points import identification_point, open_set, verification_point
from safepassage.evaluation.progress import Progress
from safepassage.evaluation.report import (
    Curves,
    GalleryPoint,
    LfwAccuracy,
    PipelineResult,
    Report,
    write_report,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# Without --out-dir: a new folder per run under this one, in the current directory (git-ignored in a
# checkout), never the tracked report under benchmarks/results/evaluation.
DEFAULT_REPORTS = Path("evaluation-report")
CACHE_FOLDER = "embeddings"
DEFAULT_MODELS = REPO / "var" / "models"
FMR_TARGETS = (1e-2, 1e-3, 1e-4)
FPIR_TARGETS = (0.003, 0.01)
QUALITY_FMR, QUALITY_FPIR = 1e-3, 0.01  # the fixed thresholds of the quality and cohort splits
# Of the single-image identities, the share searching as strangers (the rest are distractors): on
# LFW's 532 that gives 346 non-mated searches, enough for FPIR 0.003 to allow one false alarm.
NONMATED_SHARE = 0.65
# Gallery sizes beyond the real distractors, filled with synthetic ones (identification.py): they show
# the trend as a gallery grows, labelled as such; no headline figure comes from them.
SYNTHETIC_SIZES = (2_000, 5_000)
DESCRIPTIONS = {
    "onnx": "the service's ONNX pipeline (CenterFace + 5 points + ResNet descriptor)",
    "face_recognition": "face_recognition / dlib (HOG detector + dlib ResNet), the reference",
}

FloatArray = npt.NDArray[np.float64]


def default_faces() -> Path:
    return Path(os.environ.get("SAFEPASSAGE_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


@dataclass(frozen=True)
class Inputs:
    """What both pipelines are run on: the same images, pairs, protocol and groups."""

    labelled: LabelledSet
    pairs: Pairs | None
    protocol: IdentificationProtocol
    groups: Mapping[str, str]
    seed: int = 0

    def images(self) -> list[Path]:
        extra = self.pairs.images() if self.pairs is not None else []
        return list(dict.fromkeys([*self.labelled.images(), *self.protocol.images(), *extra]))

    def without(self, dropped: Collection[Path], seed: int = 0) -> Inputs:
        """These inputs less files that could not be decoded (the service would refuse them too): out
        of the set, the protocol and the pairs, as if never there, and listed in the report."""
        if not dropped:
            return self
        labelled = self.labelled.without(dropped)
        pairs = self.pairs
        if pairs is not None:
            kept = tuple(p for p in pairs if p.first not in dropped and p.second not in dropped)
            pairs = Pairs(kept, pairs.missing + len(pairs) - len(kept), tuple(sorted({p.fold for p in kept})))
        return Inputs(labelled, pairs, make_protocol(labelled, seed, NONMATED_SHARE), self.groups, seed)


def resolve_inputs(
    faces_root: Path, pairs_file: Path | None, cohorts_file: Path | None, limit: int | None, seed: int = 0
) -> Inputs:
    """The labelled folder (``faces/lfw`` when given the shared ``faces`` folder) and its pairs file.

    With ``limit`` the set is cut to that many identities and the pairs file to ``limit`` pairs spread
    evenly over it (both folds, both kinds), so a small run stays small.
    """
    folder = faces_root / "lfw" if (faces_root / "lfw").is_dir() else faces_root
    if pairs_file is None:  # the shared data's own: faces/lfw_protocol, beside faces/lfw
        candidate = folder.parent / "lfw_protocol" / "pairs_folds1-2_subset.txt"
        pairs_file = candidate if candidate.is_file() and folder.name == "lfw" else None
    labelled = LabelledSet.from_folder(folder).sample(limit, seed)
    pairs = read_pairs(pairs_file, folder) if pairs_file is not None else None
    if pairs is not None and limit is not None and limit < len(pairs):
        step = len(pairs) / limit
        chosen = tuple(pairs.pairs[int(i * step)] for i in range(limit))
        pairs = Pairs(chosen, pairs.missing, tuple(sorted({p.fold for p in chosen})))
    groups = read_cohorts(cohorts_file) if cohorts_file is not None else {}
    return Inputs(labelled, pairs, make_protocol(labelled, seed, NONMATED_SHARE), groups, seed)


# --- 1:1 and 1:N figures -------------------------------------------------------------------------


def lfw_accuracy(pairs: Pairs, embeddings: Embeddings) -> LfwAccuracy | None:
    if len(pairs.folds) < 2:
        return None
    scores = [embeddings.score(p.first, p.second) for p in pairs]
    same = np.array([p.genuine for p in pairs])
    missing = np.array([s is None for s in scores])
    worst = embeddings.metric.worst_score()
    finite = [s for s in scores if s is not None]
    # A pair without a face is a non-match: beyond every real score, so no threshold accepts it.
    beyond = (min(finite) - 1.0 if embeddings.higher_is_closer else max(finite) + 1.0) if finite else worst
    values = np.array([beyond if s is None else s for s in scores], np.float64)
    folds = np.array([p.fold for p in pairs], np.int64)
    higher = embeddings.higher_is_closer
    mean, std = metrics.ten_fold_accuracy(values, same, folds, higher_is_closer=higher)
    correct, total = metrics.cross_validated_correct(values, same, folds, higher_is_closer=higher)
    default = embeddings.model.default_threshold
    accepted = values >= default if higher else values <= default
    return LfwAccuracy(
        mean=mean,
        std=std,
        folds=len(pairs.folds),
        pairs=len(pairs),
        pairs_without_face=int(missing.sum()),
        correct=correct,
        ci95=intervals.clopper_pearson(correct, total),
        default_threshold=float(default),
        correct_at_default_threshold=int(np.count_nonzero(accepted == same)),
    )


# --- one pipeline, then the run ------------------------------------------------------------------


def evaluate_pipeline(
    inputs: Inputs, embeddings: Embeddings, edges: FloatArray, gallery_sizes: Sequence[int] | None = None
) -> PipelineResult:
    higher = embeddings.higher_is_closer
    comp = comparisons(inputs.labelled, embeddings)
    scores = metrics.VerificationScores(comp.genuine, comp.impostor, higher)
    rate, eer_threshold = metrics.eer(scores)
    det = metrics.roc(scores)
    points = [metrics.fnmr_at_fmr(scores, target) for target in FMR_TARGETS]
    real_sizes = default_gallery_sizes(inputs.protocol)
    if gallery_sizes is None:
        gallery_sizes = [*real_sizes, *(n for n in SYNTHETIC_SIZES if n > real_sizes[-1])]
    runs = identify(embeddings, inputs.protocol, gallery_sizes)
    # The headline gallery: every real distractor of the protocol, the same size for every pipeline
    # (where a pipeline finds no face in some distractors, identification.py fills the gap with
    # synthetic ones and the result says how many); bigger galleries only extend the curve.
    full = max((run for run in runs if run.gallery_size <= real_sizes[-1]), key=lambda run: run.gallery_size)
    growth = []
    for run in runs:
        run_scores = open_set(run)
        growth.append(
            GalleryPoint(
                gallery_size=run.gallery_size,
                distractors=run.real_distractors + run.synthetic_distractors,
                synthetic_distractors=run.synthetic_distractors,
                rank1=metrics.rank_rate(run_scores, 1),
                rank10=metrics.rank_rate(run_scores, 10),
                fnir_at_fpir_1e2=metrics.fnir_at_fpir(run_scores, QUALITY_FPIR).fnir,
            )
        )
    open_scores = open_set(full)
    fpir_points = [metrics.fnir_at_fpir(open_scores, target) for target in FPIR_TARGETS]
    curve = metrics.fnir_fpir_curve(open_scores)
    fmr_points = tuple(verification_point(p) for p in points)
    identification_points = tuple(identification_point(p) for p in fpir_points)
    fmr_threshold = metrics.fnmr_at_fmr(scores, QUALITY_FMR).threshold
    fpir_threshold = metrics.fnir_at_fpir(open_scores, QUALITY_FPIR).threshold
    cohorts, ratios = cohort_figures(
        comp, full, inputs.labelled, inputs.groups, fmr_threshold, fpir_threshold
    )
    return PipelineResult(
        name=embeddings.pipeline,
        description=DESCRIPTIONS.get(embeddings.pipeline, embeddings.pipeline),
        higher_is_closer=higher,
        images=comp.images,
        faces_found=comp.faces_found,
        genuine_comparisons=len(comp.genuine),
        impostor_comparisons=len(comp.impostor),
        eer=rate,
        eer_threshold=eer_threshold,
        fmr_points=fmr_points,
        lfw=lfw_accuracy(inputs.pairs, embeddings) if inputs.pairs is not None else None,
        enrolled=full.gallery_size,
        synthetic_in_gallery=full.synthetic_distractors,
        mated_searches=len(full.mated),
        nonmated_searches=len(full.nonmated),
        rank1=metrics.rank_rate(open_scores, 1),
        rank1_hits=round(metrics.rank_rate(open_scores, 1) * len(full.mated)),
        rank10=metrics.rank_rate(open_scores, 10),
        rank10_hits=round(metrics.rank_rate(open_scores, 10) * len(full.mated)),
        eer_false_non_matches=round(rate * len(comp.genuine)),
        fpir_points=identification_points,
        gallery_growth=tuple(growth),
        quality=quality_bands(comp, full, fmr_threshold, fpir_threshold, edges),
        cohorts=cohorts,
        cohort_ratios=ratios,
        curves=Curves(scores.genuine, scores.impostor, det.fmr, det.fnmr, curve.fpir, curve.fnir),
        genuine_pairs_all=comp.genuine_all,
        genuine_pairs_failed=comp.genuine_failed,
        impostor_pairs_all=comp.impostor_all,
        impostor_pairs_failed=comp.impostor_failed,
        generalised_points=tuple(generalised_point(p, comp) for p in fmr_points),
        per_search_points=tuple(per_search_point(p, full) for p in identification_points),
        captures=compare_captures(inputs.labelled, embeddings, inputs.seed, NONMATED_SHARE),
    )


def quality_edges(embeddings: Embeddings, images: Sequence[Path]) -> FloatArray:
    """Quartile edges of the edge quality over the run's images (the same for every pipeline)."""
    values = np.array([q for p in images if (q := embeddings.quality(p)) is not None], np.float64)
    if len(values) == 0:
        return np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    return np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])


def evaluate(
    faces_root: Path,
    pairs_file: Path | None,
    cohorts_file: Path | None,
    out_dir: Path,
    pipelines: Sequence[str] = PIPELINES,
    limit: int | None = None,
    model_dir: Path = DEFAULT_MODELS,
    gallery_sizes: Sequence[int] | None = None,
    *,
    cache_dir: Path | None = None,
    runner: EmbeddingRunner | None = None,
    progress: TextIO | None = None,
) -> Report:
    """Run every pipeline on the same inputs and write the report folder.

    Embeddings are cached in ``cache_dir`` (default: ``out_dir``). ``runner`` brings pipelines
    registered beside the built-in ones; ``progress`` is where embedding progress goes (stderr).
    """
    if runner is None:
        runner = EmbeddingRunner(model_dir, cache_dir=out_dir if cache_dir is None else cache_dir)
    unknown = [p for p in pipelines if p not in runner.known()]
    if unknown or not pipelines:
        raise ValueError(f"unknown pipelines {unknown}; known: {', '.join(runner.known())}")
    inputs = resolve_inputs(faces_root, pairs_file, cohorts_file, limit)
    images = inputs.images()
    log.info(
        "%d identities, %d images, %d pairs, %d enrolled, %d mated and %d non-mated searches, %d distractors",
        len(inputs.labelled),
        len(images),
        len(inputs.pairs) if inputs.pairs is not None else 0,
        len(inputs.protocol.enrolled),
        len(inputs.protocol.mated_probes),
        len(inputs.protocol.nonmated_probes),
        len(inputs.protocol.distractors),
    )
    # ONNX first: its detections give the quality scores every side is split by.
    order = sorted(pipelines, key=lambda p: p != "onnx")
    embedded: dict[str, Embeddings] = {}
    for name in order:
        counter = Progress(f"embedding ({name})", stream=progress)
        embedded[name] = runner.embed(name, images, counter)
        found = sum(1 for p in images if embedded[name].vector(p) is not None)
        counter.finish(f"{embedded[name].embedded_now:,} embedded now, a face in {found:,}")
    inputs = inputs.without(runner.unreadable.keys())
    edges = quality_edges(embedded[order[0]], inputs.labelled.images())
    results = [evaluate_pipeline(inputs, embedded[name], edges, gallery_sizes) for name in pipelines]
    if len(pipelines) > 1:
        shared = acquired_by_every({n: embedded[n] for n in pipelines}, inputs.labelled.images())
        results = [
            dataclasses.replace(
                result,
                same_images=same_image_figures(
                    inputs.labelled,
                    inputs.protocol,
                    embedded[result.name],
                    shared,
                    pipelines,
                    FMR_TARGETS,
                    FPIR_TARGETS,
                ),
            )
            for result in results
        ]
    dataset = (
        f"{inputs.labelled.root} ({len(inputs.labelled)} identities, {len(inputs.labelled.images())} images"
        + (f", limited to {limit} identities" if limit is not None else "")
        + (f"; pairs: {len(inputs.pairs)} from its pairs file" if inputs.pairs is not None else "")
        + ")"
    )
    unreadable = dict([*inputs.labelled.unreadable, *runner.unreadable.items()])
    root = inputs.labelled.root
    skipped = tuple(
        (str(path.relative_to(root) if path.is_relative_to(root) else path), reason)
        for path, reason in unreadable.items()
    )
    notes = (
        "1:1: a pair with a photo in which no face was found (a failure to acquire) is left out of the "
        "per-comparison rates and counted as a non-match in the whole-system ones "
        "(ISO/IEC 19795-1 generalised FNMR and FMR).",
        "1:N: the gallery holds one photo per enrolled person; "
        "the non-mated searches are people never enrolled. A mated search without a face, or of a "
        "person whose gallery photo had none, is a miss; the per-search rates leave such searches out.",
        "Quality is the edge's score of the ONNX detector's face, for every pipeline "
        "(dlib's detector gives no landmarks to score).",
        f"Impostor comparisons are capped at {MAX_IMPOSTORS:,} (sampled with a fixed seed beyond that).",
    )
    return write_report(out_dir, dataset, notes, results, skipped)


def fresh_report_folder(parent: Path) -> Path:
    """A new folder under ``parent`` named by the UTC time; never one that exists."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"no free report folder under {parent}")


def main(argv: list[str] | None = None) -> int:
    from safepassage.evaluation.arguments import add_evaluate_arguments

    parser = argparse.ArgumentParser(
        description="Verification and identification error rates, both pipelines."
    )
    add_evaluate_arguments(parser)  # one set of options for the CLI and this module
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.out is not None:
            out_dir, cache_dir = args.out, args.out
        else:
            out_dir = fresh_report_folder(DEFAULT_REPORTS.absolute())
            cache_dir = DEFAULT_REPORTS.absolute() / CACHE_FOLDER
        report = evaluate(
            args.faces if args.faces is not None else default_faces(),
            args.pairs,
            args.cohorts,
            out_dir,
            tuple(p.strip() for p in args.pipelines.split(",") if p.strip()),
            args.limit,
            args.model_dir if args.model_dir is not None else DEFAULT_MODELS,
            cache_dir=cache_dir,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary_path.read_text())
    print(f"report: {report.out_dir} (figures.json, {', '.join(p.name for p in report.plots)}, summary.md)")
    if report.skipped:
        shown = ", ".join(name for name, _ in report.skipped[:3])
        more = f" and {len(report.skipped) - 3} more" if len(report.skipped) > 3 else ""
        print(
            f"skipped {len(report.skipped)} file(s) that are not images the service reads: {shown}{more}"
            f" (each with its reason in {report.summary_path.name})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
