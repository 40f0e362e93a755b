"""The ABIS benchmark end to end at a tiny size (a real broker, real faces); timings are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import abis_benchmark

pytestmark = pytest.mark.timeout(240)


def test_the_abis_benchmark_runs_and_writes_its_results(
    tmp_path: Path, faces_dir: Path, model_dir: Path
) -> None:
    out = tmp_path / "abis.json"
    argv = ["--size", "300", "--searches", "5", "--inserts", "2", "--out", str(out)]
    assert abis_benchmark.main([*argv, "--faces-dir", str(faces_dir), "--model-dir", str(model_dir)]) == 0
    report = json.loads(out.read_text())
    assert report["gallery_size"] == 300
    for what, count in (("identify", 5), ("insert", 2)):
        assert report[what]["failures"] == 0
        assert report[what]["broker_per_s"] > 0 and report[what]["direct_per_s"] > 0
        assert report[what]["searches" if what == "identify" else "inserts"] == count
