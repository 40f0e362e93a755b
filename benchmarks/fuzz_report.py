"""The fuzzing figures as a table: `uv run python -m benchmarks.fuzz_report [fuzz.json]`.

tests/server/test_fuzz.py makes the figures (and writes benchmarks/results/fuzz.json
when run with SAFEPASSAGE_WRITE_RESULTS=1); this module only formats them, for the
test's summary and for reading the committed JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.json"


def table(counts: Mapping[str, Mapping[str, int]], rows: Sequence[str], first: str) -> list[str]:
    """Rows x status codes, with totals; columns are the codes that occur."""
    codes = sorted({code for row in counts.values() for code in row}, key=lambda c: (c != "OK", c))
    width = max([len(first), *(len(r) for r in rows), len("total")])
    widths = [max(len(c), 6) for c in codes]
    line = f"{first:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(codes, widths, strict=True))
    out = [line + f"  {'total':>7}", "-" * (len(line) + 9)]
    totals = dict.fromkeys(codes, 0)
    for row in rows:
        cells = counts.get(row, {})
        for code in codes:
            totals[code] += cells.get(code, 0)
        out.append(
            f"{row:<{width}}  "
            + "  ".join(f"{cells.get(c, 0):>{w}}" for c, w in zip(codes, widths, strict=True))
            + f"  {sum(cells.values()):>7}"
        )
    out.append(
        f"{'total':<{width}}  "
        + "  ".join(f"{totals[c]:>{w}}" for c, w in zip(codes, widths, strict=True))
        + f"  {sum(totals.values()):>7}"
    )
    return out


def render(results: Mapping[str, Any]) -> str:
    """The summary of one fuzzing run, as plain text."""
    rpcs = list(results["rpcs"])
    lines = [
        f"fuzz: seed {results['seed']}, {results['requests']} requests"
        f" ({results['structured_requests']} structured, {results['raw_requests']} raw-byte),"
        f" {results['stream_messages']} stream messages, {results['image_requests']} with image bytes,"
        f" {results['client_threads']} client threads, {results['runtime_s']:.1f} s",
        "",
        "RPC outcomes (the call's status):",
        *table(results["status_by_rpc"], rpcs, "rpc"),
        "",
        "Stream items (BulkInsertTemplates errors, IdentifyStream results):",
        *table(
            results["stream_items_by_rpc"], [r for r in rpcs if r in results["stream_items_by_rpc"]], "rpc"
        ),
        "",
        f"unexpected statuses: {results['unexpected']};"
        f" server serving afterwards: {results['serving_after']};"
        f" stored state unchanged: {results['state_unchanged']};"
        f" clean shutdown: {results.get('stopped_cleanly')};"
        f" unchanged after a restart: {results.get('state_unchanged_after_restart')}",
    ]
    if results.get("unexpected_by_kind"):
        lines.append("unexpected statuses by kind of request:")
        lines += [f"  {count:6d}  {group}" for group, count in results["unexpected_by_kind"].items()]
        lines.append("examples:")
        lines += [f"  {example}" for example in results.get("unexpected_examples", [])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else RESULTS
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
