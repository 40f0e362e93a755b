"""The evaluation report: its figures, the JSON file, the PNG plots and the one-page summary.

run.py measures; this module holds what was measured (frozen dataclasses, one
per pipeline) and draws it. Nothing here computes an error rate: every number
in the plots and the summary was put into a `PipelineResult` by run.py, so the
JSON, the plots and the prose cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in tests

import matplotlib.pyplot as plt  # after the backend is chosen
import numpy as np
import numpy.typing as npt
from matplotlib.ticker import NullFormatter, ScalarFormatter

from safepassage.evaluation.summary import summary_markdown

FloatArray = npt.NDArray[np.float64]
COLOURS = {"onnx": "tab:blue", "face_recognition": "tab:orange"}


@dataclass(frozen=True)
class VerificationPoint:
    """FNMR where the threshold lets through at most `target_fmr` of the impostor comparisons.

    Every rate comes with its count (k of n) and its Clopper-Pearson 95 % interval (intervals.py). The
    interval treats comparisons as independent; they are not (a person is in many), so it is a floor on
    the uncertainty, not the whole of it.
    """

    target_fmr: float
    threshold: float
    fmr: float
    false_matches: int
    impostor_comparisons: int
    fmr_ci95: tuple[float, float]
    fnmr: float
    false_non_matches: int
    genuine_comparisons: int
    fnmr_ci95: tuple[float, float]
    expected_false_matches: float  # impostor_comparisons * target_fmr
    supported: bool  # expected_false_matches >= intervals.MIN_EXPECTED_ERRORS
    fmr_upper_bound_95: float | None  # rule of three; written only where no false match was seen


@dataclass(frozen=True)
class IdentificationPoint:
    """FNIR where the threshold lets at most `target_fpir` of the non-mated searches return a candidate.

    A non-mated search is one person never enrolled (the unit of independence); mated searches are
    several photos of one enrolled person, so their interval is a floor on the uncertainty.
    """

    target_fpir: float
    threshold: float
    fpir: float
    false_positives: int
    nonmated_searches: int
    fpir_ci95: tuple[float, float]
    fnir: float
    misses: int
    mated_searches: int
    fnir_ci95: tuple[float, float]
    expected_false_positives: float  # nonmated_searches * target_fpir
    supported: bool  # expected_false_positives >= intervals.MIN_EXPECTED_ERRORS
    fpir_upper_bound_95: float | None  # rule of three; written only where no false positive was seen


@dataclass(frozen=True)
class GeneralisedPoint:
    """Whole-system 1:1 rates (ISO/IEC 19795-1 generalised FNMR, FMR) at a per-comparison point's threshold.

    Every pair of the set counts, not only those with a face found in both photos: a pair with a failure
    to acquire is a non-match, so a genuine one is a false non-match and an impostor one a correct
    rejection (per pair, GFNMR = FTA + FNMR (1 - FTA) and GFMR = FMR (1 - FTA)). A pipeline that finds no
    face in the hard photos cannot look better by leaving their pairs out.
    """

    target_fmr: float
    threshold: float
    gfnmr: float
    false_non_matches: int  # the per-comparison ones plus every genuine pair with a failure to acquire
    genuine_pairs: int  # every genuine pair of the set
    gfnmr_ci95: tuple[float, float]
    gfmr: float
    false_matches: int
    impostor_pairs: int  # every impostor pair of the set (sampled alike beyond MAX_IMPOSTORS)
    gfmr_ci95: tuple[float, float]


@dataclass(frozen=True)
class PerSearchPoint:
    """1:N rates at a whole-system point's threshold, over only the searches the pipeline could make.

    Mated: probes with a face found whose person is in the gallery; non-mated: probes with a face found.
    The whole-system figures (`IdentificationPoint`) count the rest as misses and as no alarm.
    """

    target_fpir: float
    threshold: float
    fnir: float
    misses: int
    mated_searches: int
    fnir_ci95: tuple[float, float]  # NaN where there was no such search
    fpir: float
    false_positives: int
    nonmated_searches: int
    fpir_ci95: tuple[float, float]


@dataclass(frozen=True)
class SameImageFigures:
    """One pipeline's figures on the photos every pipeline of the run found a face in (like for like).

    The same pairs and searches for every pipeline, so a difference is the pipelines', not the photos'.
    Thresholds are each pipeline's own at the same targets, set on these pairs and searches.
    """

    pipelines: tuple[str, ...]  # whose acquired photos were intersected
    images: int  # photos every one of them found a face in
    of_images: int  # photos of the labelled set
    genuine_comparisons: int
    impostor_comparisons: int
    eer: float
    eer_false_non_matches: int
    fmr_points: tuple[VerificationPoint, ...]
    enrolled: int  # gallery: enrolled people and real distractors, all in the shared photos
    mated_searches: int
    nonmated_searches: int
    rank1_hits: int
    fpir_points: tuple[IdentificationPoint, ...]  # () when the shared photos leave no search of a kind


@dataclass(frozen=True)
class LfwAccuracy:
    mean: float  # mean over folds of the accuracy at the threshold learnt on the other folds
    std: float
    folds: int
    pairs: int
    pairs_without_face: int  # counted as wrong (a pair the pipeline cannot compare is not a match)
    correct: int  # pairs judged right, each at its own fold's learnt threshold (k of pairs)
    ci95: tuple[float, float]  # of correct / pairs; pairs share people, so a floor on the uncertainty
    default_threshold: float  # the model's own 1:1 threshold (0.6 for dlib's ResNet)
    correct_at_default_threshold: int


@dataclass(frozen=True)
class GalleryPoint:
    gallery_size: int  # enrolled identities + distractors
    distractors: int
    synthetic_distractors: int  # Gaussian stand-ins where the data ran out (easier than real strangers)
    rank1: float
    rank10: float
    fnir_at_fpir_1e2: float


@dataclass(frozen=True)
class QualityBand:
    """Error rates of comparisons whose worse image falls in one quality quartile (fixed thresholds)."""

    quartile: int
    quality_from: float
    quality_to: float
    genuine_pairs: int
    impostor_pairs: int
    fnmr: float
    fmr: float
    mated_searches: int
    fnir: float


@dataclass(frozen=True)
class CohortFigures:
    """One group's figures at the whole population's thresholds (as a deployment would run)."""

    group: str
    identities: int
    images: int
    genuine_pairs: int
    impostor_pairs: int
    eer: float
    fnmr: float
    fmr: float
    mated_searches: int
    rank1: float
    fnir: float


@dataclass(frozen=True)
class CohortRatio:
    figure: str
    worst_group: str
    worst: float
    best_group: str
    best: float
    ratio: float


@dataclass(frozen=True)
class Curves:
    """What the plots need beyond the figures (kept out of the JSON, apart from a thinned DET curve)."""

    genuine: FloatArray
    impostor: FloatArray
    det_fmr: FloatArray
    det_fnmr: FloatArray
    fpir: FloatArray
    fnir: FloatArray


@dataclass(frozen=True)
class CaptureEnrolment:
    """Open-set figures of one way of enrolling the same people (capture_comparison.py)."""

    enrolment: str  # "one capture" or "all but the last image"
    subjects: int  # people searched for (with three or more images)
    captures: int  # gallery images of those people (their captures, in total)
    gallery_size: int  # subjects + distractors in the gallery
    mated_searches: int
    nonmated_searches: int
    rank1: float
    fpir_points: tuple[IdentificationPoint, ...]


@dataclass(frozen=True)
class PipelineResult:
    name: str  # "onnx" or "face_recognition"
    description: str
    higher_is_closer: bool
    images: int
    faces_found: int
    genuine_comparisons: int
    impostor_comparisons: int
    eer: float
    eer_threshold: float
    fmr_points: tuple[VerificationPoint, ...]
    lfw: LfwAccuracy | None
    enrolled: int  # gallery size of the headline 1:N figures (enrolled people + real distractors)
    synthetic_in_gallery: int  # synthetic distractors standing in for distractor photos with no face
    mated_searches: int
    nonmated_searches: int
    rank1: float
    rank1_hits: int  # of mated_searches
    rank10: float
    rank10_hits: int
    eer_false_non_matches: int  # round(eer * genuine_comparisons): the count behind the (interpolated) EER
    fpir_points: tuple[IdentificationPoint, ...]
    gallery_growth: tuple[GalleryPoint, ...]
    quality: tuple[QualityBand, ...]
    cohorts: tuple[CohortFigures, ...]
    cohort_ratios: tuple[CohortRatio, ...]
    curves: Curves
    # Failures to acquire (ISO/IEC 19795-1), pair by pair: every pair of the set, and those with a photo
    # in which no face was found (left out of the per-comparison figures above, counted in these).
    genuine_pairs_all: int
    genuine_pairs_failed: int
    impostor_pairs_all: int
    impostor_pairs_failed: int
    generalised_points: tuple[GeneralisedPoint, ...]
    per_search_points: tuple[PerSearchPoint, ...]
    same_images: SameImageFigures | None = None  # with two or more pipelines
    captures: tuple[CaptureEnrolment, ...] = ()  # one capture and several, side by side

    @property
    def failures_to_acquire(self) -> int:
        return self.images - self.faces_found

    @property
    def failure_to_acquire(self) -> float:
        return 1.0 - self.faces_found / self.images if self.images else 0.0

    def fnir_at(self, fpir: float) -> IdentificationPoint | None:
        return next((p for p in self.fpir_points if math.isclose(p.target_fpir, fpir)), None)

    def fnmr_at(self, fmr: float) -> VerificationPoint | None:
        return next((p for p in self.fmr_points if math.isclose(p.target_fmr, fmr)), None)

    def generalised_at(self, fmr: float) -> GeneralisedPoint | None:
        return next((p for p in self.generalised_points if math.isclose(p.target_fmr, fmr)), None)

    def per_search_at(self, fpir: float) -> PerSearchPoint | None:
        return next((p for p in self.per_search_points if math.isclose(p.target_fpir, fpir)), None)


@dataclass(frozen=True)
class Report:
    out_dir: Path
    dataset: str
    notes: tuple[str, ...]
    pipelines: tuple[PipelineResult, ...]
    json_path: Path
    plots: tuple[Path, ...]
    summary_path: Path
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why): not images the service reads, left out


def _thin(x: FloatArray, y: FloatArray, points: int = 200) -> list[list[float]]:
    """A curve cut to about `points` points, kept in the JSON for readers without the plots."""
    if len(x) == 0:
        return []
    index = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).astype(int))
    return [[float(x[i]), float(y[i])] for i in index]


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity; null means "not measurable on this data"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def figures_json(
    dataset: str,
    notes: Sequence[str],
    pipelines: Sequence[PipelineResult],
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, object]:
    out: dict[str, object] = {
        "dataset": dataset,
        "notes": list(notes),
        "skipped_files": [{"file": name, "reason": why} for name, why in skipped],
        "pipelines": {},
    }
    table: dict[str, object] = {}
    for result in pipelines:
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "curves"}
        as_dict = {
            k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
            for k, v in fields.items()
        }
        for key in (
            "fmr_points",
            "fpir_points",
            "gallery_growth",
            "quality",
            "cohorts",
            "cohort_ratios",
            "generalised_points",
            "per_search_points",
            "captures",
        ):
            as_dict[key] = [dataclasses.asdict(v) for v in fields[key]]
        as_dict["failures_to_acquire"] = result.failures_to_acquire
        as_dict["failure_to_acquire"] = result.failure_to_acquire
        as_dict["det_curve_fmr_fnmr"] = _thin(result.curves.det_fmr, result.curves.det_fnmr)
        as_dict["fpir_fnir_curve"] = _thin(result.curves.fpir, result.curves.fnir)
        table[result.name] = as_dict
    out["pipelines"] = table
    result_json = _jsonable(out)
    assert isinstance(result_json, dict)
    return result_json


def _label(result: PipelineResult) -> str:
    return f"{result.name} (EER {100 * result.eer:.1f} %)"


def plot_det(pipelines: Sequence[PipelineResult], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 5))
    for result in pipelines:
        fmr, fnmr = result.curves.det_fmr, result.curves.det_fnmr
        # Log axes cannot show zero: clip each rate to half of one comparison's worth.
        fmr_floor = 0.5 / max(result.impostor_comparisons, 1)
        fnmr_floor = 0.5 / max(result.genuine_comparisons, 1)
        axes.plot(
            np.clip(fmr, fmr_floor, 1),
            np.clip(fnmr, fnmr_floor, 1),
            label=_label(result),
            color=COLOURS.get(result.name),
        )
        axes.plot([result.eer], [result.eer], "o", color=COLOURS.get(result.name))
    for target in (1e-2, 1e-3, 1e-4):
        axes.axvline(target, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("false match rate (FMR)")
    axes.set_ylabel("false non-match rate (FNMR)")
    axes.set_title("DET: 1:1 verification (lower left is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def plot_histograms(pipelines: Sequence[PipelineResult], path: Path) -> Path:
    figure, all_axes = plt.subplots(1, len(pipelines), figsize=(5 * len(pipelines), 4), squeeze=False)
    for axes, result in zip(all_axes[0], pipelines, strict=True):
        values = np.concatenate([result.curves.genuine, result.curves.impostor])
        bins = np.linspace(float(values.min()), float(values.max()), 60) if len(values) else 10
        axes.hist(
            result.curves.impostor, bins=bins, density=True, alpha=0.6, label="impostor (different people)"
        )
        axes.hist(result.curves.genuine, bins=bins, density=True, alpha=0.6, label="genuine (same person)")
        axes.axvline(result.eer_threshold, color="black", linestyle="--", linewidth=1, label="EER threshold")
        direction = "higher is closer" if result.higher_is_closer else "lower is closer"
        axes.set_xlabel(f"score ({direction})")
        axes.set_ylabel("density")
        axes.set_title(result.name)
        axes.legend(fontsize=8, loc="upper right")
    figure.suptitle("Genuine and impostor score distributions")
    return _save(figure, path)


def plot_fnir_fpir(pipelines: Sequence[PipelineResult], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 5))
    for result in pipelines:
        floor = 0.5 / max(result.nonmated_searches, 1)
        axes.plot(
            np.clip(result.curves.fpir, floor, 1),
            result.curves.fnir,
            label=f"{result.name} (gallery {result.enrolled})",
            color=COLOURS.get(result.name),
        )
    for target in (0.003, 0.01):
        axes.axvline(target, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_ylim(0, 1)
    axes.set_xlabel("false positive identification rate (FPIR)")
    axes.set_ylabel("false negative identification rate (FNIR)")
    axes.set_title("1:N open-set identification")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def plot_gallery_growth(pipelines: Sequence[PipelineResult], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 5))
    for result in pipelines:
        colour = COLOURS.get(result.name)
        # Real distractors (a few stand-ins for photos without a face aside): solid line; the extension
        # with synthetic distractors: dotted, hollow markers.
        real = [p for p in result.gallery_growth if 100 * p.synthetic_distractors <= p.gallery_size]
        extended = [*real[-1:], *(p for p in result.gallery_growth if p not in real)]
        for points, style, fill in ((real, "-", "full"), (extended, ":", "none")):
            if len(points) < 1 or (fill == "none" and len(points) < 2):
                continue
            sizes = [p.gallery_size for p in points]
            axes.plot(
                sizes,
                [p.rank1 for p in points],
                "o" + style,
                color=colour,
                fillstyle=fill,
                label=f"{result.name} rank-1" if fill == "full" else None,
            )
            axes.plot(
                sizes,
                [p.fnir_at_fpir_1e2 for p in points],
                "s" + style,
                color=colour,
                fillstyle=fill,
                label=f"{result.name} FNIR at FPIR 0.01" if fill == "full" else None,
            )
    if any(p.synthetic_distractors for r in pipelines for p in r.gallery_growth):
        axes.plot([], [], "k:", fillstyle="none", marker="o", label="with synthetic distractors")
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())  # 300, 1000: plain gallery sizes
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_ylim(0, 1)
    axes.set_xlabel("gallery size (enrolled identities + distractors)")
    axes.set_ylabel("rate")
    axes.set_title("Identification as the gallery grows")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="center right")
    return _save(figure, path)


def _save(figure: matplotlib.figure.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
    return path


def write_report(
    out_dir: Path,
    dataset: str,
    notes: Sequence[str],
    pipelines: Sequence[PipelineResult],
    skipped: Sequence[tuple[str, str]] = (),
) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "figures.json"
    json_path.write_text(json.dumps(figures_json(dataset, notes, pipelines, skipped), indent=2) + "\n")
    plots = (
        plot_det(pipelines, out_dir / "det.png"),
        plot_histograms(pipelines, out_dir / "scores.png"),
        plot_fnir_fpir(pipelines, out_dir / "fnir_fpir.png"),
        plot_gallery_growth(pipelines, out_dir / "gallery_growth.png"),
    )
    summary_path = out_dir / "summary.md"
    summary_path.write_text(summary_markdown(dataset, notes, pipelines, skipped))
    return Report(
        out_dir, dataset, tuple(notes), tuple(pipelines), json_path, plots, summary_path, tuple(skipped)
    )
