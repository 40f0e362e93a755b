"""The one-page Markdown summary of an evaluation, for readers who are not biometrics specialists.

It leads with the question a border agency asks (how many people on a watchlist are missed, at a
given false-alarm rate), then the figures side by side with the number of trials behind each, the
quality split and the group ratios, and ends with the words it uses, explained. Every rate is shown
with its count (k of n) and its 95 % interval (intervals.py), and an operating point with too few
trials behind it (intervals.MIN_EXPECTED_ERRORS) says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from safepassage.evaluation import intervals

if TYPE_CHECKING:  # report.py imports this module to write the summary
    from safepassage.evaluation.report import IdentificationPoint, PipelineResult, VerificationPoint


def _pct(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.1f} %"


def _rate(k: int, n: int) -> str:
    """'46.5 % (437 of 939, 95 % CI 43.3-49.8 %)'; with no error, the rule-of-three bound instead."""
    if n == 0:
        return "n/a"
    return intervals.cite(k, n)


def _share(rate: float, n: int) -> str:
    """A rate saved as a share of n trials (k = rate x n), cited like _rate; 'n/a' with no trials."""
    return "n/a" if n == 0 or not math.isfinite(rate) else _rate(round(rate * n), n)


def _per_100(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.0f}" if rate >= 0.1 else f"{100 * rate:.1f}"


def _verification_cell(p: VerificationPoint | None) -> str:
    if p is None:
        return "n/a"
    return (
        f"{_rate(p.false_non_matches, p.genuine_comparisons)} at FMR "
        f"{_rate(p.false_matches, p.impostor_comparisons)}" + ("" if p.supported else "; not supported")
    )


def _identification_cell(q: IdentificationPoint | None) -> str:
    if q is None:
        return "n/a"
    return f"{_rate(q.misses, q.mated_searches)} at FPIR {_rate(q.false_positives, q.nonmated_searches)}" + (
        "" if q.supported else "; not supported"
    )


def _different_photos(pipelines: Sequence[PipelineResult]) -> list[str]:
    """A warning where the pipelines' per-comparison figures rest on different pairs, else nothing."""
    if len(pipelines) < 2 or len({r.genuine_comparisons for r in pipelines}) == 1:
        return []
    found = ", ".join(f"{r.name} {r.failures_to_acquire:,}" for r in pipelines)
    pairs = ", ".join(f"{r.name} {r.genuine_comparisons:,}" for r in pipelines)
    return [
        f"**Not the same photos.** Photos with no face found, of {pipelines[0].images:,}: {found}. Their "
        f"per-comparison figures therefore rest on different genuine pairs ({pairs}): a pipeline that "
        "finds no face in the hard photos drops their pairs and can look better than it is. Compare the "
        "whole-system rows, which count every pair, and the like-for-like table below, which scores "
        "every pipeline on the photos all of them found a face in.",
        "",
    ]


def _side_by_side(pipelines: Sequence[PipelineResult]) -> list[str]:
    lines = [
        "## Side by side",
        "",
        "Whole-system rows count every photo and pair (ISO/IEC 19795-1): a pair with a photo in which no "
        "face was found is a non-match, a search without a face a miss. Per-comparison rows count only "
        "the pairs with a face found in both photos, and per-search rows only the searches that could run.",
        "",
        "| figure | " + " | ".join(r.name for r in pipelines) + " |",
        "|---|" + "---|" * len(pipelines),
    ]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(
        "photos with no face found (failure to acquire)",
        [_rate(r.failures_to_acquire, r.images) for r in pipelines],
    )
    row(
        "genuine pairs with a photo without a face (false non-matches in the whole-system rows)",
        [_rate(r.genuine_pairs_failed, r.genuine_pairs_all) for r in pipelines],
    )
    for target in (1e-2, 1e-3, 1e-4):
        cells = []
        for r in pipelines:
            g = r.generalised_at(target)
            cells.append(
                "n/a"
                if g is None
                else f"{_rate(g.false_non_matches, g.genuine_pairs)} at FMR "
                f"{_rate(g.false_matches, g.impostor_pairs)}"
            )
        row(f"whole-system false non-match rate at the FMR {target:g} threshold", cells)
    row(
        "equal error rate (per comparison; interval of FNMR there)",
        [_rate(r.eer_false_non_matches, r.genuine_comparisons) for r in pipelines],
    )
    for target in (1e-2, 1e-3, 1e-4):
        row(
            f"false non-match rate at FMR {target:g} (per comparison)",
            [_verification_cell(r.fnmr_at(target)) for r in pipelines],
        )
    row(
        "LFW accuracy (pairs file folds; a pair without a face is wrong)",
        [
            "n/a"
            if r.lfw is None
            else f"{_rate(r.lfw.correct, r.lfw.pairs)}, ± {_pct(r.lfw.std)} across {r.lfw.folds} folds"
            for r in pipelines
        ],
    )
    row(
        "LFW accuracy at the model's own threshold",
        [
            "n/a"
            if r.lfw is None
            else f"{_rate(r.lfw.correct_at_default_threshold, r.lfw.pairs)} at {r.lfw.default_threshold:g}"
            for r in pipelines
        ],
    )
    row(
        "rank-1 (right person first; whole system)",
        [_rate(r.rank1_hits, r.mated_searches) for r in pipelines],
    )
    row("rank-10", [_rate(r.rank10_hits, r.mated_searches) for r in pipelines])
    for target in (0.003, 0.01):
        row(
            f"missed (FNIR) at FPIR {target:g} (whole system)",
            [_identification_cell(r.fnir_at(target)) for r in pipelines],
        )
        cells = []
        for r in pipelines:
            q = r.per_search_at(target)
            cells.append(
                "n/a"
                if q is None
                else f"{_rate(q.misses, q.mated_searches)} at FPIR "
                f"{_rate(q.false_positives, q.nonmated_searches)}"
            )
        row(f"missed (FNIR) at the FPIR {target:g} threshold (per search)", cells)
    return lines


def _like_for_like(pipelines: Sequence[PipelineResult]) -> list[str]:
    shared = [r.same_images for r in pipelines]
    if len(pipelines) < 2:
        return []
    first = next((s for s in shared if s is not None), None)
    if first is None or any(s is None for s in shared):
        return ["", "## Like for like", "", "The photos every pipeline found a face in hold no genuine pair."]
    lines = [
        "",
        f"## Like for like: the {first.images:,} photos (of {first.of_images:,}) "
        "every pipeline found a face in",
        "",
        "The same pairs and searches for every pipeline, each at its own thresholds for the same targets:",
        "",
        "| figure | " + " | ".join(r.name for r in pipelines) + " |",
        "|---|" + "---|" * len(pipelines),
    ]
    same = [s for s in shared if s is not None]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("genuine / impostor pairs", [f"{s.genuine_comparisons:,} / {s.impostor_comparisons:,}" for s in same])
    row(
        "equal error rate (interval of FNMR there)",
        [_rate(s.eer_false_non_matches, s.genuine_comparisons) for s in same],
    )
    for target in (1e-2, 1e-3, 1e-4):
        row(
            f"false non-match rate at FMR {target:g}",
            [
                _verification_cell(
                    next((p for p in s.fmr_points if math.isclose(p.target_fmr, target)), None)
                )
                for s in same
            ],
        )
    row("rank-1", [_rate(s.rank1_hits, s.mated_searches) for s in same])
    for target in (0.003, 0.01):
        row(
            f"missed (FNIR) at FPIR {target:g}",
            [
                _identification_cell(
                    next((q for q in s.fpir_points if math.isclose(q.target_fpir, target)), None)
                )
                for s in same
            ],
        )
    return lines


def _captures(pipelines: Sequence[PipelineResult]) -> list[str]:
    rows = [(r.name, c) for r in pipelines for c in r.captures]
    if not rows:
        return []
    lines = [
        "",
        "## One photo per person, or several?",
        "",
        "The same people (three or more photos each) enrolled from their first photo alone, or from all but "
        "their last (searched by the mean of those captures), and searched with their last photo; the same "
        "strangers:",
        "",
        "| pipeline | enrolment | people (photos) | rank-1 | FNIR at FPIR 0.01 | FNIR at FPIR 0.003 |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in rows:
        cells = [_identification_cell(c.fpir_points[i]) if i < len(c.fpir_points) else "" for i in (0, 1)]
        lines.append(
            f"| {name} | {c.enrolment} | {c.subjects} ({c.captures}) | "
            f"{_share(c.rank1, c.mated_searches)} | {cells[0]} | {cells[1]} |"
        )
    return lines


def summary_markdown(
    dataset: str,
    notes: Sequence[str],
    pipelines: Sequence[PipelineResult],
    skipped: Sequence[tuple[str, str]] = (),
) -> str:
    lines = ["# How often does it make a mistake?", "", f"Data: {dataset}.", ""]
    if skipped:
        lines += [f"{len(skipped)} file(s) skipped: not images the service reads (listed at the end).", ""]
    for result in pipelines:
        point = result.fnir_at(0.01)
        if point is None:
            continue
        caveat = (
            ""
            if point.supported
            else f"; **not supported**: that threshold rests on {point.false_positives} false alarm(s) among "
            f"{point.nonmated_searches} travellers, and {intervals.MIN_EXPECTED_ERRORS} are needed"
        )
        lines.append(
            f"- **{result.name}**: of 100 travellers who are on the watchlist, {_per_100(point.fnir)} are "
            f"missed when 1 in 100 who are not is wrongly flagged "
            f"({result.mated_searches} watchlisted searches, {point.nonmated_searches} others, "
            f"gallery of {result.enrolled}"
            + (
                f", {result.synthetic_in_gallery} of them synthetic stand-ins for photos with no face found"
                if result.synthetic_in_gallery
                else ""
            )
            + f"{caveat})."
        )
    lines.append("")
    lines += _different_photos(pipelines)
    lines += _side_by_side(pipelines)
    lines += _like_for_like(pipelines)
    lines += _captures(pipelines)
    lines += ["", "## Does photo quality matter?", ""]
    lines.append(
        "Error rates by quartile of the edge's quality score (the worse photo of each comparison; "
        "thresholds fixed at FMR 0.001 and FPIR 0.01 over everyone):"
    )
    lines.append("")
    lines.append("| pipeline | quartile | quality | FNMR | FMR | FNIR |")
    lines.append("|---|---|---|---|---|---|")
    for r in pipelines:
        for band in r.quality:
            lines.append(
                f"| {r.name} | Q{band.quartile} | {band.quality_from:.2f}-{band.quality_to:.2f} | "
                f"{_share(band.fnmr, band.genuine_pairs)} | "
                f"{_share(band.fmr, band.impostor_pairs)} | "
                f"{_share(band.fnir, band.mated_searches)} |"
            )
    if any(r.cohorts for r in pipelines):
        lines += ["", "## Groups", "", "Worst against best group, at the same thresholds for everyone:", ""]
        lines.append("| pipeline | figure | worst group | best group | ratio |")
        lines.append("|---|---|---|---|---|")
        for r in pipelines:
            for ratio in r.cohort_ratios:
                lines.append(
                    f"| {r.name} | {ratio.figure} | {ratio.worst_group} {_pct(ratio.worst)} | "
                    f"{ratio.best_group} {_pct(ratio.best)} | {ratio.ratio:.2f} |"
                )
    lines += [
        "",
        "## Words",
        "",
        "- *False match*: two photos of different people judged the same person. "
        "*False non-match*: two photos of the same person judged different.",
        "- *FPIR*: share of searches by people **not** on the watchlist that wrongly return someone. "
        "*FNIR*: share of searches by people **on** it whose right entry is not returned first "
        "above the threshold.",
        "- *Failure to acquire*: a photo in which the pipeline found no face, so it has nothing to compare. "
        "*Whole-system* rates (ISO/IEC 19795-1 generalised rates) count every attempt, such photos "
        "included, as a deployment meets them; *per-comparison* and *per-search* rates count only what "
        "could be compared, and flatter a pipeline that fails on the hard photos.",
        "- A rate is only as good as the number of trials behind it: each is shown as k of n with its "
        "95 % interval (Clopper-Pearson; with no error, the rule-of-three upper bound). The interval treats "
        "trials as independent: non-mated searches are one person each, but comparisons and mated searches "
        "share people, so their true uncertainty is wider.",
        f"- An operating point is *supported* when its trials allow at least {intervals.MIN_EXPECTED_ERRORS} "
        "errors at the target (n x target >= "
        f"{intervals.MIN_EXPECTED_ERRORS}); below that its threshold is set by a handful of errors and the "
        "point is marked *not supported*.",
        "",
        "Plots: `det.png` (1:1 errors), `scores.png` (score distributions), `fnir_fpir.png` (1:N errors), "
        "`gallery_growth.png` (1:N as the gallery grows; dotted: filled with synthetic distractors, "
        "which flatter the system). All figures: `figures.json`.",
    ]
    if notes:
        lines += ["", "Notes:", "", *[f"- {note}" for note in notes]]
    if skipped:
        lines += ["", "Files skipped (not images the service reads):", ""]
        lines += [f"- `{name}`: {why}" for name, why in skipped]
    return "\n".join(lines) + "\n"
