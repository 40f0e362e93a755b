"""What several captures per subject cost: adding them, and searching a gallery of such subjects.

Two galleries of the same N synthetic subjects (benchmarks/synthetic_templates.py, three captures
of each identity): one enrolled from each subject's first capture, one from all three (the first
inserted, the other two added with Matcher.add_captures, so the subject is searched by their mean
template). Both are searched one probe at a time through the real Matcher (store lookups included,
no gRPC) with the same probes, half mated; then the three-capture gallery is calibrated with a
background cohort (2,000 synthetic strangers, half kept) and searched again. Reported: the time to
add captures (Matcher.add_captures_many, 5,000 subjects a batch: one store transaction per subject,
one index update per batch), identify latency per query (p50/p95) and its ratio to the one-capture
gallery (issue 19: at most 3.5 times at 100k subjects), index entries, store size, and the
synthetic rank-1 of each (synthetic faces: a check that fusion works at scale, not a measure of
accuracy on real faces, which benchmarks/fusion_comparison.py gives).

    uv run python benchmarks/capture_cost.py --subjects 100000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as identify_benchmark.py: one thread per search

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.synthetic_templates import generate
from safepassage import store
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, Metric

RESULTS = Path(__file__).resolve().parent / "results" / "capture_cost.json"
CAPTURES = 3
_CHUNK = 5_000


def _percentiles(samples: Sequence[float]) -> dict[str, float]:
    data = np.asarray(samples, dtype=np.float64) * 1000
    return {"p50_ms": float(np.percentile(data, 50)), "p95_ms": float(np.percentile(data, 95))}


def _search(matcher: Matcher, gallery: str, probes: npt.NDArray[np.float32]) -> tuple[list[float], list[str]]:
    times, tops = [], []
    for probe in probes:
        started = time.perf_counter()
        (answer,) = matcher.identify(gallery, probe[None, :], top_k=5)
        times.append(time.perf_counter() - started)
        tops.append(answer.candidates[0].reference_id if answer.candidates else "")
    return times, tops


def _rank1(tops: list[str], mates: npt.NDArray[np.int64]) -> float:
    mated = [(top, int(m)) for top, m in zip(tops, mates, strict=True) if m >= 0]
    return sum(top == f"s{m}" for top, m in mated) / max(len(mated), 1)


def measure(subjects: int, queries: int, seed: int, folder: Path) -> dict[str, object]:
    data = generate(subjects * CAPTURES, queries, seed, samples_per_identity=CAPTURES)
    strangers = generate(2_000, 0, seed + 1, samples_per_identity=1).templates
    captures = data.templates.reshape(subjects, CAPTURES, -1)
    key = os.urandom(32)
    template_store = store.TemplateStore.open(folder / "db.sqlite3", store.TemplateSealer(key))
    matcher = Matcher(template_store, folder / "snapshots", key[::-1])
    out: dict[str, object] = {}
    try:
        matcher.load()
        for gallery in ("one", "three"):
            matcher.create_gallery(
                GallerySpec(gallery, GalleryPurpose.WATCHLIST, "synthetic", 128, Metric.L2, 0.5)
            )
            for start in range(0, subjects, _CHUNK):
                items = [(f"s{i}", captures[i, 0]) for i in range(start, min(start + _CHUNK, subjects))]
                assert matcher.insert_many(gallery, items) == [None] * len(items)
        added: list[float] = []  # per subject: a batch's time over its subjects
        started = time.perf_counter()
        for start in range(0, subjects, _CHUNK):
            batch = [(f"s{i}", list(captures[i, 1:])) for i in range(start, min(start + _CHUNK, subjects))]
            began = time.perf_counter()
            outcomes = matcher.add_captures_many("three", batch)
            assert all(isinstance(o, store.SubjectChange) for o in outcomes), outcomes[:3]
            added.extend([(time.perf_counter() - began) / len(batch)] * len(batch))
        adding_seconds = time.perf_counter() - started
        searches: dict[str, dict[str, float]] = {}
        for gallery in ("one", "three"):
            _search(matcher, gallery, data.probes[:20])  # warm-up
            times, tops = _search(matcher, gallery, data.probes)
            searches[gallery] = {**_percentiles(times), "rank1_synthetic": _rank1(tops, data.mates)}
        matcher.calibrate("three", impostors=strangers, target_fpir=0.01, background_cohort=True)
        times, tops = _search(matcher, "three", data.probes)
        searches["three_with_background_cohort"] = {
            **_percentiles(times),
            "rank1_synthetic": _rank1(tops, data.mates),
        }
        one = searches["one"]["p50_ms"]
        out = {
            "subjects": subjects,
            "captures_per_subject": CAPTURES,
            "queries": queries,
            "index_entries": {g: matcher.count(g) for g in ("one", "three")},
            "add_captures": {
                **_percentiles(added),
                "per_second": subjects / adding_seconds,
                "seconds": adding_seconds,
            },
            "identify": searches,
            "ratio_p50_three_to_one": searches["three"]["p50_ms"] / one,
            "ratio_p50_cohort_to_one": searches["three_with_background_cohort"]["p50_ms"] / one,
            "index_kind": {g: matcher.describe(g).index_kind for g in ("one", "three")},
            "background_cohort": matcher.describe("three").background_cohort,
        }
    finally:
        matcher.close()
        template_store.close()
    out["store_bytes"] = (folder / "db.sqlite3").stat().st_size
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="capture-cost-") as folder:
        result = measure(args.subjects, args.queries, args.seed, Path(folder))
    saved = {
        "benchmark": "capture_cost",
        "issue": 19,
        "command": "uv run python benchmarks/capture_cost.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(saved, indent=2) + "\n")
    identify = result["identify"]
    assert isinstance(identify, dict)
    print(f"{args.subjects:,} subjects, {CAPTURES} captures each; identify one probe at a time, top 5:")
    print("| gallery | p50 ms | p95 ms | synthetic rank-1 |")
    print("|---|---|---|---|")
    for name, row in identify.items():
        print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['rank1_synthetic']:.3f} |")
    print(
        f"ratio three/one (p50): {result['ratio_p50_three_to_one']:.2f};"
        f" with the background cohort: {result['ratio_p50_cohort_to_one']:.2f}"
    )
    print(f"add_captures: {result['add_captures']}")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
