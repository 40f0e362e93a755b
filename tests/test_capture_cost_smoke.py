"""benchmarks/capture_cost.py on a small gallery: it runs, fuses, and saves what the README quotes."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.capture_cost import main


def test_capture_cost_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "capture_cost.json"
    assert main(["--subjects", "300", "--queries", "40", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    # One index entry per subject whatever its captures: the search cost does not grow with them.
    assert saved["index_entries"] == {"one": 300, "three": 300}
    assert saved["background_cohort"] == 1000
    identify = saved["identify"]
    assert identify["three"]["rank1_synthetic"] >= identify["one"]["rank1_synthetic"]
    assert saved["add_captures"]["per_second"] > 0 and saved["command"].startswith("uv run python")
