"""The one-page Markdown summary of an evaluation, for readers who are not biometrics specialists.

It leads with the question a border agency asks (how many people on a watchlist are missed, at a
given false-alarm rate), then the figures side by side with the number of trials behind each, the
quality split and the group ratios, and ends with the words it uses, explained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # report.py imports this module to write the summary
    from benchmarks.evaluation.report import PipelineResult


def _pct(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.1f} %"


def _per_100(rate: float) -> str:
    return "n/a" if not math.isfinite(rate) else f"{100 * rate:.0f}" if rate >= 0.1 else f"{100 * rate:.1f}"


def summary_markdown(dataset: str, notes: Sequence[str], pipelines: Sequence[PipelineResult]) -> str:
    lines = ["# How often does it make a mistake?", "", f"Data: {dataset}.", ""]
    for result in pipelines:
        point = result.fnir_at(0.01)
        if point is None:
            continue
        caveat = "" if point.supported else " (too few non-watchlisted travellers to measure this reliably)"
        lines.append(
            f"- **{result.name}**: of 100 travellers who are on the watchlist, {_per_100(point.fnir)} are "
            f"missed when 1 in 100 who are not is wrongly flagged{caveat} "
            f"({result.mated_searches} watchlisted searches, {point.nonmated_searches} others, "
            f"gallery of {result.enrolled}"
            + (
                f", {result.synthetic_in_gallery} of them synthetic stand-ins for photos with no face found"
                if result.synthetic_in_gallery
                else ""
            )
            + ")."
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

    row("photos with no face found", [f"{r.images - r.faces_found} of {r.images}" for r in pipelines])
    row("equal error rate (1:1)", [_pct(r.eer) for r in pipelines])
    for target in (1e-2, 1e-3, 1e-4):
        cells = []
        for r in pipelines:
            p = r.fnmr_at(target)
            cells.append(
                "n/a"
                if p is None
                else f"{_pct(p.fnmr)} ({p.impostor_comparisons:,} impostor comparisons"
                + ("" if p.supported else ", too few")
                + ")"
            )
        row(f"false non-match rate at FMR {target:g}", cells)
    row(
        "LFW accuracy (pairs file folds)",
        [
            "n/a"
            if r.lfw is None
            else f"{_pct(r.lfw.mean)} ± {_pct(r.lfw.std)} ({r.lfw.folds} folds, {r.lfw.pairs} pairs)"
            for r in pipelines
        ],
    )
    row("rank-1 (right person first)", [_pct(r.rank1) for r in pipelines])
    row("rank-10", [_pct(r.rank10) for r in pipelines])
    for target in (0.003, 0.01):
        cells = []
        for r in pipelines:
            q = r.fnir_at(target)
            cells.append(
                "n/a"
                if q is None
                else f"{_pct(q.fnir)} ({q.nonmated_searches} non-mated searches"
                + ("" if q.supported else ", too few")
                + ")"
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
                f"{_pct(band.fnmr)} | {_pct(band.fmr)} | {_pct(band.fnir)} |"
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
        "- A rate is only as good as the number of trials behind it: rates marked *too few* rest on fewer "
        "trials than one per expected error.",
        "",
        "Plots: `det.png` (1:1 errors), `scores.png` (score distributions), `fnir_fpir.png` (1:N errors), "
        "`gallery_growth.png` (1:N as the gallery grows; dotted: filled with synthetic distractors, "
        "which flatter the system). All figures: `figures.json`.",
    ]
    if notes:
        lines += ["", "Notes:", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
