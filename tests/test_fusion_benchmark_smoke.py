"""The fusion comparison (benchmarks/fusion_comparison.py) runs end to end on a tiny LFW subset.

Five searched people, twelve strangers, a cohort of 3 (each background half holds six faces): the
figures mean nothing at this size; the test checks that every configuration is scored through the
fusion core, that the report holds what the README quotes, and that the fast error rates used for
the bootstrap agree with the harness's own (safepassage/evaluation/metrics.py). Timings not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import fusion_comparison as bench
from safepassage.evaluation import metrics

pytestmark = pytest.mark.timeout(120)


def test_fast_rates_agree_with_the_harness() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        mated = np.round(rng.normal(0.45, 0.1, size=40), 2)
        ranks = np.where(rng.random(40) < 0.9, 1, 2).astype(np.int64)
        mated = np.where(ranks == 1, mated, np.inf)
        nonmated = np.round(rng.normal(0.75, 0.1, size=rng.integers(50, 400)), 2)  # ties on purpose
        scores = metrics.OpenSetScores(mated, ranks, nonmated, higher_is_closer=False)
        for target in (0.01, 0.003, 0.05, 1.0):
            expected = metrics.fnir_at_fpir(scores, target).fnir
            assert bench.fnir_at(mated, nonmated, target) == pytest.approx(expected), target


def test_benchmark_writes_its_report(tmp_path: Path, faces_dir: Path, model_dir: Path) -> None:
    out = tmp_path / "fusion.json"
    argv = [
        "--faces", str(faces_dir), "--model-dir", str(model_dir), "--cache-dir", str(tmp_path / "cache"),
        "--out", str(out), "--people", "5", "--strangers", "12", "--cohort", "3", "--bootstrap", "40",
        "--splits", "10", "--sizes", "3,5,40", "--latency-synthetic", "40", "--latency-queries", "15",
        "--embed-timing", "2", "--work-dir", str(tmp_path),
    ]  # fmt: skip
    assert bench.main(argv) == 0

    report = json.loads(out.read_text())
    assert report["benchmark"] == "fusion_comparison"
    assert report["command"].startswith("uv run python benchmarks/fusion_comparison.py --faces")
    assert {"cpu_count", "cpu_model", "numpy", "onnxruntime", "date"} <= report["machine"].keys()
    assert report["data"]["searched_subjects"] == 5 and report["data"]["strangers"] == 12
    configurations = {c["name"]: c for c in report["configurations"]}
    assert len(configurations) == len(bench.ENROLMENTS) * len(bench.PIPELINES) * len(bench.NORMALISATIONS)
    assert report["baseline"] == "one" and configurations["one"]["fnir@fpir=0.01_minus_baseline"] == 0.0
    for name, entry in configurations.items():
        assert entry["fusion_core_agrees_with_full_matrix"], name
        for key in ("rank1", "fnir@fpir=0.01", "fnir@fpir=0.003", "fnmr@fmr=0.001"):
            low, high = entry[f"{key}_ci95"]
            assert 0.0 <= low <= high <= 1.0, (name, key)
        assert entry["calibration"]["splits"] == 10
    # One vector per subject for one photo and the mean; the captures for max, and one more for mean+max.
    assert (
        configurations["one"]["vectors_per_subject"] == configurations["mean"]["vectors_per_subject"] == 1.0
    )
    assert (
        configurations["mean+max"]["vectors_per_subject"] == configurations["max"]["vectors_per_subject"] + 1
    )
    assert any(d["first"] == "mean + flip" and d["second"] == "mean" for d in report["paired_differences"])

    sizes = {entry["name"]: entry["points"] for entry in report["gallery_sizes"]}
    assert [p["subjects"] for p in sizes["mean + background cohort"]] == [3, 5, 40]
    assert [p["synthetic_subjects"] for p in sizes["mean + background cohort"]] == [0, 0, 35]
    assert set(report["latency"]) == {"real_gallery", "synthetic_gallery"}
    assert report["latency"]["synthetic_gallery"]["max"]["subjects"] == 40
    for where in report["latency"].values():
        for enrolment, measured in where.items():
            assert measured["queries"] == 5 and measured["identify_p50_ms"] > 0, enrolment
    assert report["embedding"]["flip_cost_ratio"] > 1.0
    assert (tmp_path / "cache" / f"embeddings-{bench.MIRRORED}.npz").is_file()
    assert not list(tmp_path.glob("fusion-*")), "the temporary stores were not removed"
    table = bench.markdown(report)
    assert "| mean + background cohort |" in table and "10000" not in table
