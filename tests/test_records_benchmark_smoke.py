"""The protected records benchmark runs end to end at a tiny size; timings are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import records_benchmark as bench

pytestmark = pytest.mark.timeout(120)


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_benchmark_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results" / "records.json"
    assert bench.main(["--quick", "--out", str(out), "--data-dir", str(tmp_path)]) == 0

    report = json.loads(out.read_text())
    assert report["benchmark"] == "records"
    assert {"cpu_count", "python", "cryptography", "sqlite", "date"} <= report["machine"].keys()
    assert positive(report["machine"]["cpu_count"])
    settings = report["settings"]
    assert settings["sizes"] == [50, 200] and settings["photo_sizes"] == [50]
    assert settings["matcher"] is False and settings["scrypt_in_insert"] is False

    text, photo = report["records"]["text"], report["records"]["photo"]
    assert 2_000 < text["record_bytes"] < 4_000  # about 3 KB without photos
    assert 150_000 < photo["record_bytes"] < 250_000  # about 200 KB with the document photo
    assert text["sealed_record_bytes"] > text["record_bytes"]

    pins = report["pin_check"]
    for kind in ("ordinary", "duress", "wrong"):
        assert pins[kind]["count"] == pins["per_kind"] >= 1
        assert positive(pins[kind]["p50_ms"]) and pins[kind]["p50_ms"] <= pins[kind]["p99_ms"]
    assert isinstance(pins["duress_minus_ordinary_p50_ms"], float) and positive(pins["create_ms"])

    results = report["results"]
    assert [(r["kind"], r["size"]) for r in results] == [("text", 50), ("text", 200), ("photo", 50)]
    for r in results:
        size = r["size"]
        insert = r["insert"]
        assert insert["records"] == size and insert["latency"]["count"] == size
        assert positive(insert["per_second"]) and positive(insert["seconds"])
        opened = r["open"]
        assert opened["latency"]["count"] == min(20, size)
        for part in ("latency", "get", "unwrap_and_open", "parse"):
            assert positive(opened[part]["p50_ms"]) and opened[part]["p50_ms"] <= opened[part]["p99_ms"]
        vault = r["vault"]
        assert positive(vault["bytes_per_record"]) and vault["wal_bytes"] == 0  # checkpointed
        expected_size = 2_000 if r["kind"] == "text" else 150_000
        assert vault["bytes_per_record"] > expected_size
        rotation = r["rotation"]
        assert rotation["keys_rewrapped"] == size and rotation["kek_versions_destroyed"] == [1, 2]
        assert positive(rotation["seconds"]) and positive(rotation["per_key_us"])
        assert positive(rotation["first_seconds"]) and positive(rotation["first_per_key_us"])
        assert positive(rotation["rewrap_crypto_s"]) and positive(rotation["read_keys_s"])
        erasure = r["erasure"]
        assert erasure["keys_rewrapped"] == size and erasure["kek_versions_destroyed"] == [3]
        assert positive(erasure["seconds"]) and positive(erasure["vault_erase_ms"])
        assert erasure["erased_record_gone"] and erasure["survivor_opens"]
        assert erasure["live_kek_versions"] == 1 and erasure["records_left"] == size - 1
    assert positive(report["total_seconds"])
    assert not list(tmp_path.glob("records-bench-*")), "a temporary vault was not removed"
