"""The scale benchmark and its synthetic templates, end to end at tiny sizes; timings are not asserted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from benchmarks import ground_truth
from benchmarks import scale_benchmark as bench
from benchmarks import synthetic_templates as synthetic
from benchmarks.machine_profile import GIB, MIB
from benchmarks.scale_configs import default_params, params_name, parse_config, search_variants
from benchmarks.scale_estimate import Rates, estimate
from safepassage.matcher import Metric, exact_search

pytestmark = pytest.mark.timeout(180)


def test_templates_are_seeded_chunk_independent_and_shaped_like_dlib_descriptors() -> None:
    data = synthetic.generate(6000, 200, seed=3)
    assert data.templates.dtype == np.float32 and data.templates.shape == (6000, synthetic.DIMENSION)
    assert data.identities == 3000 and int((data.mates >= 0).sum()) == 100
    again = synthetic.generate(6000, 200, seed=3)
    assert np.array_equal(data.templates, again.templates) and np.array_equal(data.probes, again.probes)
    # Identities come chunk by chunk from their own generators: a smaller gallery is a prefix.
    assert np.array_equal(synthetic.generate(1000, 10, seed=3).templates, data.templates[:1000])
    assert not np.array_equal(synthetic.generate(1000, 10, seed=4).templates, data.templates[:1000])

    stats = synthetic.distance_stats(data)
    assert abs(stats.genuine_mean - synthetic.DLIB_LFW["genuine_mean"]) < 0.03
    assert abs(stats.impostor_mean - synthetic.DLIB_LFW["impostor_mean"]) < 0.03
    assert stats.genuine_above_threshold < 0.08 and stats.impostor_below_threshold < 0.02

    # A mated probe's nearest template is a capture of its own identity.
    mated = np.flatnonzero(data.mates >= 0)
    hits = exact_search(data.templates, data.ids, data.probes[mated], 1, Metric.L2)
    own = hits.ids[:, 0] // data.samples_per_identity == data.mates[mated]
    assert own.mean() > 0.95


def test_ground_truth_merges_gallery_chunks_into_the_exact_top_k(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic.generate(5000, 60, seed=8)
    monkeypatch.setattr(ground_truth, "GROUND_TRUTH_CHUNK", 700)  # several chunks, the last one short
    truth = ground_truth.exact_top_k(data.templates, data.probes, 10, threads=1)
    reference = exact_search(data.templates, data.ids, data.probes, 10, Metric.L2)
    assert np.array_equal(truth.hits.ids, reference.ids)
    assert np.allclose(truth.hits.scores, reference.scores, atol=1e-5)
    tiny = ground_truth.exact_top_k(data.templates[:4], data.probes[:3], 10, threads=1)
    assert (tiny.hits.ids[:, 4:] == -1).all() and sorted(tiny.hits.ids[0, :4]) == [0, 1, 2, 3]


def test_configurations_parse_build_and_search_parameters() -> None:
    spec = parse_config("sq8:nlist=64,nprobe=8/16,rerank=32")
    assert spec.family == "sq8" and spec.build == {"nlist": 64}
    variants = search_variants(spec, default_params(10_000, "sq8"))
    assert [(v.nlist, v.nprobe, v.rerank) for v in variants] == [(64, 8, 32), (64, 16, 32)]
    # Unless set, efSearch follows nprobe as the policy's does: twice nprobe, at least 64.
    wide = search_variants(parse_config("sq8:nprobe=16/128"), default_params(10**6, "sq8"))
    assert [v.quantizer_ef_search for v in wide] == [64, 256]
    fixed = search_variants(parse_config("sq8:nprobe=128,ef=100"), variants[0])
    assert fixed[0].quantizer_ef_search == 100
    for bad in ("hnsw", "sq8:nprobe", "sq8:nlist=1/2", "sq8:colour=3", "flat:nprobe=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_config(bad)


def test_benchmark_writes_its_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ground_truth, "GROUND_TRUTH_CHUNK", 512)
    out = tmp_path / "results" / "scale.json"
    argv = ["--sizes", "2000", "--queries", "40", "--time-limit", "5", "--build-threads", "1"]
    argv += ["--configs", "flat", "sq8:nlist=32,nprobe=4/32", "pq:nlist=32,pq_m=16", "policy"]
    argv += ["--bandwidth-gib", "0.0625", "--bandwidth-repeats", "2", "--out", str(out)]
    threshold = faiss.cvar.distance_compute_blas_threshold
    assert bench.main(argv) == 0
    assert faiss.cvar.distance_compute_blas_threshold == threshold  # process-wide: put back

    report = json.loads(out.read_text())
    assert report["benchmark"] == "scale" and report["complete"] is True and report["skipped"] == []
    assert report["results"][0]["failures"] == {}
    assert {"cpu_count", "faiss", "numpy", "date"} <= report["machine"].keys()
    settings = report["settings"]
    assert settings["sizes"] == [2000] and settings["search_threads"] == 1
    assert settings["blas_threshold"] == 2 * synthetic.DIMENSION
    (result,) = report["results"]
    assert result["size"] == 2000 and result["identities"] == 1000 and result["mated_queries"] == 20
    distances = result["distances"]
    assert 0.3 < distances["genuine_mean"] < 0.6 < distances["impostor_mean"] < 1.0
    assert result["bandwidth"]["gb_s"] > 0 and result["exact_bound_ms"] > 0 and result["peak_rss_mib"] > 0
    assert result["search_data"]["mated_rank1_identity_rate"] > 0.9

    by_name = {entry["name"]: entry for entry in result["indexes"]}
    # The pq entry's unset search parameters are the index policy's at 2,000.
    (pq,) = search_variants(parse_config("pq:nlist=32,pq_m=16"), default_params(2000, "pq"))
    pq_name = params_name(pq)
    assert pq_name.startswith("pq m16 nlist=32 nprobe=")
    assert list(by_name) == [
        "flat",
        "sq8 nlist=32 nprobe=4 ef=64 rerank=64",
        "sq8 nlist=32 nprobe=32 ef=64 rerank=64",
        pq_name,
    ]
    for name, entry in by_name.items():
        recall = entry["recall"]
        assert recall["queries"] == 40, name
        for value in (recall["at_1"], recall["at_10"], recall["at_1_mated"], recall["at_1_non_mated"]):
            assert 0.0 <= value <= 1.0, name
        # Approximate indexes re-rank exactly: where the top-1 agrees, so does its score.
        assert recall["top1_score_error"] < 1e-4, name
        assert entry["memory_bytes"] > 2000 * 4 * synthetic.DIMENSION, name
        assert entry["single"]["queries"] == 40 and entry["batched"]["queries"] == 40, name
        assert 0 < entry["single"]["p50_ms"] <= entry["single"]["p99_ms"], name
        assert entry["batched"]["qps"] > 0 and entry["speedup_vs_exact"] > 0, name
    flat = by_name["flat"]
    assert flat["kind"] == "flat" and flat["params"] is None
    assert flat["recall"]["at_1"] == 1.0 and flat["recall"]["at_10"] == 1.0
    assert flat["speedup_vs_exact"] == 1.0 and flat["latency_over_bound"] > 0
    probed_all = by_name["sq8 nlist=32 nprobe=32 ef=64 rerank=64"]
    assert probed_all["kind"] == "ivf_hnsw_sq8" and probed_all["params"]["nprobe"] == 32
    assert probed_all["build_shared_with"] == "sq8 nlist=32 nprobe=4 ef=64 rerank=64"
    # Every list probed and every candidate re-ranked exactly: nothing can be missed at k=1.
    assert probed_all["recall"]["at_1"] == 1.0
    assert by_name[pq_name]["kind"] == "ivf_hnsw_pq" and by_name[pq_name]["params"]["pq_m"] == 16

    policy = result["policy"]  # below its exact_below the policy keeps the gallery exact
    assert policy["available"] and policy["kind"] == "flat" and policy["measured_as"] == "flat"
    assert {"generate", "ground truth", "build flat", "search flat"} <= result["stages"].keys()
    assert [stage["stage"] for stage in result["estimate"]][:3] == ["generate", "bandwidth", "ground truth"]
    targets = report["targets"]
    assert set(targets) == {
        "exact_1m_latency_over_bound",
        "approximate_10m_recall_at_1",
        "approximate_10m_speedup_vs_exact",
    }
    assert all(t["met"] is None for t in targets.values())  # their sizes were not run


def test_large_sizes_are_planned_and_skipped_when_memory_is_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--plan", "--sizes", "1000000,10000000"]) == 0
    planned = capsys.readouterr().out
    assert "estimate for 10,000,000" in planned and "peak" in planned
    # 10M: the gallery (5.1 GB), then its largest index beside it.
    stages = estimate(10_000_000, bench.parse_options(["--sizes", "10000000"]), Rates())
    peak = max(stage.peak_bytes for stage in stages)
    assert 10 * GIB < peak < 20 * GIB

    monkeypatch.setattr(bench, "available_memory", lambda: 64 * MIB)
    out = tmp_path / "scale.json"
    assert bench.main(["--sizes", "100000", "--configs", "flat", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["complete"] and report["results"] == []
    (skipped,) = report["skipped"]
    assert skipped["size"] == 100_000 and "GiB available" in skipped["reason"]
