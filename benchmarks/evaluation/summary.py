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

from benchmarks.evaluation import intervals

if TYPE_CHECKING:  # report.py imports this module to write the summary
    from benchmarks.evaluation.report import PipelineResult


def _pct(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.1f} %"


def _rate(k: int, n: int) -> str:
    """'46.5 % (437 of 939, 95 % CI 43.3-49.8 %)'; with no error, the rule-of-three bound instead."""
    if n == 0:
        return "n/a"
    return intervals.cite(k, n)


def _per_100(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.0f}" if rate >= 0.1 else f"{100 * rate:.1f}"


def summary_markdown(dataset: str, notes: Sequence[str], pipelines: Sequence[PipelineResult]) -> str:
    lines = ["# How often does it make a mistake?", "", f"Data: {dataset}.", ""]
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
    lines += [
        "",
        "## Side by side",
        "",
        "| figure | " + " | ".join(r.name for r in pipelines) + " |",
        "|---|" + "---|" * len(pipelines),
    ]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("photos with no face found", [_rate(r.images - r.faces_found, r.images) for r in pipelines])
    row(
        "equal error rate (1:1; interval of FNMR there)",
        [_rate(r.eer_false_non_matches, r.genuine_comparisons) for r in pipelines],
    )
    for target in (1e-2, 1e-3, 1e-4):
        cells = []
        for r in pipelines:
            p = r.fnmr_at(target)
            cells.append(
                "n/a"
                if p is None
                else f"{_rate(p.false_non_matches, p.genuine_comparisons)} at FMR "
                f"{_rate(p.false_matches, p.impostor_comparisons)}"
                + ("" if p.supported else "; not supported")
            )
        row(f"false non-match rate at FMR {target:g}", cells)
    row(
        "LFW accuracy (pairs file folds)",
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
    row("rank-1 (right person first)", [_rate(r.rank1_hits, r.mated_searches) for r in pipelines])
    row("rank-10", [_rate(r.rank10_hits, r.mated_searches) for r in pipelines])
    for target in (0.003, 0.01):
        cells = []
        for r in pipelines:
            q = r.fnir_at(target)
            cells.append(
                "n/a"
                if q is None
                else f"{_rate(q.misses, q.mated_searches)} at FPIR "
                f"{_rate(q.false_positives, q.nonmated_searches)}"
                + ("" if q.supported else "; not supported")
            )
        row(f"missed (FNIR) at FPIR {target:g}", cells)
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
                f"{_rate(round(band.fnmr * band.genuine_pairs), band.genuine_pairs)} | "
                f"{_rate(round(band.fmr * band.impostor_pairs), band.impostor_pairs)} | "
                f"{_rate(round(band.fnir * band.mated_searches), band.mated_searches)} |"
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
    return "\n".join(lines) + "\n"
