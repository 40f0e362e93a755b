"""The micro-batching benchmark runs end to end at a tiny size; timings are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import batching_benchmark as bench
from safepassage.server.config import load_config

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]


def test_each_setting_is_a_valid_server_configuration() -> None:
    options = bench.parse_options(["--size", "5000", "--batch-workers", "1,3", "--max-wait-ms", "4"])
    settings = bench.settings_of(options)
    assert [s.name for s in settings] == ["unbatched", "batched_w1", "batched_w3"]
    for setting in settings:
        config = load_config(None, setting.overrides(options))
        batching = config.matching.batching
        assert batching.enabled is setting.batching
        assert batching.max_wait_ms == 4.0 and batching.max_batch == 64
        assert config.listen.max_workers == 64
        # Exact search at the benchmark's size, whatever the default policy would pick.
        assert config.matching.index.exact_below > 5000
    assert load_config(None, settings[2].overrides(options)).matching.batching.workers == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--clients", "65"],  # more clients than server threads
        ["--seconds", "0"],
        ["--batch-workers", "0"],
        ["--batch-workers", "one"],
        ["--size", "0"],
    ],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_options(argv)


def test_benchmark_writes_its_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "batching.json"
    argv = ["--size", "2000", "--clients", "4", "--seconds", "2", "--queries", "50", "--server-threads", "8"]
    assert bench.main([*argv, "--out", str(out), "--data-dir", str(tmp_path)]) == 0

    report = json.loads(out.read_text())
    assert report["benchmark"] == "batching"
    assert {"cpu_count", "faiss", "grpcio", "numpy", "date"} <= report["machine"].keys()
    settings = report["settings"]
    assert settings["size"] == 2000 and settings["clients"] == 4 and settings["seconds"] == 2
    assert settings["index"] == "exact" and settings["batch_workers"] == [[1, 1]]
    # Mutual TLS as deployed; the rate limits are off: the benchmark measures capacity, not policy.
    assert settings["mutual_tls"] is True and settings["rate_limits"] is False
    assert settings["targets"] == {"speedup": 3.0, "p99_ms": 500.0}
    assert report["load"]["templates"] == 2000
    assert report["correctness"]["unbatched_vs_exact_agreement"] == 1.0

    unbatched, batched = report["measurements"]
    assert (unbatched["name"], batched["name"]) == ("unbatched", "batched_w1")
    for m in (unbatched, batched):
        assert m["calls"] > 0 and m["qps"] > 0 and m["clients"] == 4, m["name"]
        assert 0 < m["p50_ms"] <= m["p99_ms"] <= m["max_ms"], m["name"]
        assert m["top1_checked"] > 0 and m["top1_agreement"] == 1.0, m["name"]
        assert m["index_kind"] == "flat", m["name"]
    assert unbatched["batching"] is False and unbatched["speedup"] is None
    assert unbatched["search_calls"] is None and unbatched["mean_batch"] is None
    assert unbatched["meets_targets"] is None
    assert batched["batching"] is True and batched["batch_workers"] == 1
    assert batched["speedup"] > 0 and isinstance(batched["meets_targets"], bool)
    assert batched["search_calls"] >= 1 and 1.0 <= batched["mean_batch"] <= 4.0
    assert 1 <= batched["largest_batch"] <= 4

    table = capsys.readouterr().out
    assert "| 2,000 | unbatched | flat | 4 |" in table and "| 2,000 | batched_w1 | flat | 4 |" in table
    assert not list(tmp_path.glob("batching-bench-*")), "the temporary store was not removed"
