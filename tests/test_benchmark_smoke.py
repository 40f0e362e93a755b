"""The identify benchmark runs end to end at a tiny size; timings are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import identify_benchmark as bench

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

SERVICE_MEASUREMENTS = [
    "matcher",
    "grpc_unary",
    "grpc_unary_concurrent",
    "grpc_stream",
    "grpc_stream_pipelined",
]
# Bare FAISS once, then the service with micro-batching as shipped and with it off.
MEASUREMENTS = [
    "faiss",
    "faiss_concurrent",
    *SERVICE_MEASUREMENTS,
    *(name + bench.OFF_SUFFIX for name in SERVICE_MEASUREMENTS),
]


def test_synthetic_data_is_shaped_like_face_descriptors() -> None:
    data = bench.synthetic_dataset(size=3000, queries=200, seed=5)
    assert data.templates.dtype == np.float32 and data.templates.shape == (3000, bench.DIMENSION)
    assert int((data.mates >= 0).sum()) == 100
    mated = np.flatnonzero(data.mates >= 0)
    distances = np.linalg.norm(data.probes[mated] - data.templates[data.mates[mated]], axis=1)
    assert 0.3 < float(np.median(distances)) < 0.5
    again = bench.synthetic_dataset(size=3000, queries=200, seed=5)
    assert np.array_equal(data.probes, again.probes)


def test_benchmark_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "identify.json"
    argv = ["--sizes", "2000", "--queries", "20", "--time-limit", "10", "--concurrency", "2"]
    assert bench.main([*argv, "--out", str(out), "--data-dir", str(tmp_path)]) == 0

    report = json.loads(out.read_text())
    assert report["benchmark"] == "identify"
    assert {"cpu_count", "faiss", "grpcio", "numpy", "date"} <= report["machine"].keys()
    assert report["settings"]["sizes"] == [2000]
    # Mutual TLS as deployed; the rate limits are off: the benchmark measures capacity, not policy.
    assert report["settings"]["mutual_tls"] is True and report["settings"]["rate_limits"] is False
    (result,) = report["results"]
    assert result["size"] == 2000
    assert result["load"]["templates"] == 2000 and result["load"]["per_second"] > 0
    by_name = {m["name"]: m for m in result["measurements"]}
    assert list(by_name) == MEASUREMENTS
    for name, measurement in by_name.items():
        assert measurement["queries"] == 20, name
        assert measurement["qps"] > 0, name
        assert measurement["top1_agreement"] == 1.0, name
        if not name.startswith("grpc_stream_pipelined"):
            assert measurement["p50_ms"] <= measurement["p99_ms"], name
    assert by_name["grpc_unary"]["baseline"] == "faiss"
    assert by_name["grpc_unary"]["latency_ratio_p50"] > 0
    check = result["correctness"]
    assert check["grpc_top1_agreement"] == 1.0 and check["grpc_top1_checked"] == 2 * 4 * 20
    assert report["settings"]["batching_modes"] == ["on", "off"]
    assert check["faiss_vs_exact_agreement"] == 1.0
    assert not list(tmp_path.glob("identify-bench-*")), "the temporary store was not removed"
