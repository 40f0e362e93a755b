"""What one exact FAISS search of a batch costs at 1M x 128: the fixed cost and the cost per probe.

    uv run python benchmarks/batch_cost.py [--size 1000000] [--out benchmarks/results/batch_cost.json]

The micro-batcher (safepassage/matcher/batcher.py) gains only when a batch's matrix product costs less
per probe
than a lone probe's sequential scan. This times `safepassage.matcher.FlatIndex.search` on one thread (as one
batch worker searches), with the service's BLAS threshold (8 x dimension: batches of 8 or more go
through BLAS, a lone probe keeps the sequential scan), for a lone probe and batches of 8 to 64, the
median of `--repeats` runs each, and fits cost = fixed + per_probe x probes over the batches by least
squares. The gain per probe at q probes is (lone probe's time) / (batch time / q). Random 128-d
vectors: an exact scan's cost does not depend on the values. About 30 s and 1.1 GiB.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread, as one batch worker searches

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from safepassage.matcher import FlatIndex, Metric, set_blas_threshold  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "batch_cost.json"
DIMENSION = 128
BATCHES = (8, 16, 32, 64)


def timed(index: FlatIndex, probes: np.ndarray, repeats: int) -> float:
    """Median wall seconds of one search of `probes` (top 5)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        index.search(probes, 5)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def run(size: int, repeats: int, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    set_blas_threshold(8 * DIMENSION)
    rng = np.random.default_rng(seed)
    index = FlatIndex(DIMENSION, Metric.L2)
    for start in range(0, size, 100_000):
        count = min(100_000, size - start)
        vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
        index.add(np.arange(start, start + count, dtype=np.int64), vectors)
    probes = rng.standard_normal((max(BATCHES), DIMENSION), dtype=np.float32)
    timed(index, probes[:1], 1)  # warm the pages
    lone = timed(index, probes[:1], repeats)
    batches = {q: timed(index, probes[:q], repeats) for q in BATCHES}
    sizes = np.array(list(batches), np.float64)
    seconds = np.array(list(batches.values()), np.float64)
    per_probe, fixed = np.polyfit(sizes, seconds, 1)
    return {
        "benchmark": "batch_cost",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "load_average_at_start": list(os.getloadavg()),
        },
        "settings": {"size": size, "dimension": DIMENSION, "threads": 1, "repeats": repeats, "top_k": 5},
        "lone_probe_ms": 1000 * lone,
        "batch_ms": {str(q): 1000 * s for q, s in batches.items()},
        "batch_ms_per_probe": {str(q): 1000 * s / q for q, s in batches.items()},
        "gain_per_probe": {str(q): lone / (s / q) for q, s in batches.items()},
        "fit": {"fixed_ms": 1000 * float(fixed), "per_probe_ms": 1000 * float(per_probe)},
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args.size, args.repeats, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps({k: report[k] for k in ("lone_probe_ms", "batch_ms", "gain_per_probe", "fit")}, indent=2)
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
