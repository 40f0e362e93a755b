"""The evaluation harness end to end on a small LFW subset: both pipelines, sane figures, real plots.

One evaluation (40 identities, both pipelines) is shared by the module; the CLI then reruns it from
the embedding cache in the same report folder. The sanity ranges are the ones a pipeline returning
random embeddings fails (checked here too, on random vectors in place of the real ones).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safepassage.evaluation.embed import EmbeddingRunner, Embeddings
from safepassage.evaluation.report import PipelineResult, Report
from safepassage.evaluation.run import evaluate, evaluate_pipeline, quality_edges, resolve_inputs

LIMIT = 40
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sanity_failures(result: PipelineResult) -> list[str]:
    """What is out of the range any working face pipeline reaches on this subset."""
    failures = []
    if not result.eer < 0.15:
        failures.append(f"EER {result.eer:.3f}")
    if not result.rank1 > 0.7:
        failures.append(f"rank-1 {result.rank1:.3f}")
    if result.lfw is not None and not result.lfw.mean > 0.8:
        failures.append(f"LFW accuracy {result.lfw.mean:.3f}")
    if not result.curves.genuine.mean() < result.curves.impostor.mean():  # L2: lower is closer
        failures.append("genuine scores not closer than impostor scores")
    return failures


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    # An arbitrary attribute (the first letter of the name): the harness must take any grouping.
    path = tmp_path_factory.mktemp("cohorts") / "groups.csv"
    names = sorted(p.name for p in (faces_dir / "lfw").iterdir() if p.is_dir())
    path.write_text("identity,group\n" + "".join(f"{n},{'A-L' if n[0] <= 'L' else 'M-Z'}\n" for n in names))
    return path


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, model_dir: Path, cohorts: Path
) -> Report:
    out = tmp_path_factory.mktemp("evaluation")
    return evaluate(faces_dir, None, cohorts, out, limit=LIMIT, model_dir=model_dir)


def test_both_pipelines_fall_in_sane_ranges(report: Report) -> None:
    assert [r.name for r in report.pipelines] == ["onnx", "face_recognition"]
    assert report.pipelines[0].enrolled == report.pipelines[1].enrolled  # the same gallery, side by side
    for result in report.pipelines:
        assert sanity_failures(result) == [], result.name
        assert result.images >= LIMIT and 0 <= result.images - result.faces_found <= 3
        assert result.genuine_comparisons > 20 and result.impostor_comparisons > 1000
        for point in result.fmr_points:
            assert 0 <= point.fmr <= point.target_fmr and 0 <= point.fnmr <= 1
            assert point.supported == (point.impostor_comparisons * point.target_fmr >= 10)
            assert point.false_matches == round(point.fmr * point.impostor_comparisons)
            low, high = point.fmr_ci95
            assert low <= point.fmr <= high
            # The rule-of-three bound is written only where it is the figure to quote: no false match.
            assert (point.fmr_upper_bound_95 is None) == (point.false_matches > 0)
        assert [p.target_fmr for p in result.fmr_points] == [1e-2, 1e-3, 1e-4]
        assert not result.fmr_points[-1].supported  # 1e-4 needs 100 000 impostor pairs; the subset has fewer
        assert result.lfw is not None and result.lfw.folds == 2 and result.lfw.pairs == LIMIT
        assert result.rank10 >= result.rank1
        assert [p.target_fpir for p in result.fpir_points] == [0.003, 0.01]
        for ident in result.fpir_points:
            assert ident.fpir <= ident.target_fpir and 0 <= ident.fnir <= 1
            assert ident.nonmated_searches == result.nonmated_searches > 0
            assert ident.false_positives == round(ident.fpir * ident.nonmated_searches)
            assert ident.misses == round(ident.fnir * ident.mated_searches)
            assert ident.fnir_ci95[0] <= ident.fnir <= ident.fnir_ci95[1]
        assert result.lfw.correct <= result.lfw.pairs and result.lfw.ci95[0] <= result.lfw.mean
        assert result.rank1_hits <= result.rank10_hits <= result.mated_searches
        sizes = [p.gallery_size for p in result.gallery_growth]
        # The headline gallery holds the real distractors; the last sizes only extend the curve.
        assert sizes == sorted(sizes) and len(sizes) >= 3 and result.enrolled in sizes[:-1]
        assert result.synthetic_in_gallery <= 3  # stand-ins only for distractor photos with no face
        assert sizes[-1] == 5_000  # the synthetic extension of the curve
        assert all(0 <= p.rank1 <= p.rank10 <= 1 for p in result.gallery_growth)
        assert [b.quartile for b in result.quality] == [1, 2, 3, 4]
        assert 0 < sum(b.genuine_pairs for b in result.quality) <= result.genuine_comparisons
        assert {c.group for c in result.cohorts} == {"A-L", "M-Z"}
        assert {r.figure for r in result.cohort_ratios} >= {"eer", "fnmr", "rank1"}
        assert all(r.ratio >= 1 for r in result.cohort_ratios)
        # One capture and several, side by side: the same people, searches and strangers.
        one, several = result.captures
        assert (one.enrolment, several.enrolment) == ("one capture", "all but the last image")
        assert one.subjects == several.subjects > 0 and several.captures > one.captures == one.subjects
        assert (one.mated_searches, one.nonmated_searches) == (
            several.mated_searches,
            several.nonmated_searches,
        )
        assert [p.target_fpir for p in several.fpir_points] == [0.01, 0.003]
        assert several.rank1 >= one.rank1


def test_random_embeddings_fail_the_sanity_ranges(report: Report, faces_dir: Path, model_dir: Path) -> None:
    inputs = resolve_inputs(faces_dir, None, None, LIMIT)
    real = EmbeddingRunner(model_dir, cache_dir=report.out_dir).embed("onnx", inputs.images())
    rng = np.random.default_rng(0)
    scrambled = {
        path: dataclasses.replace(
            item,
            vector=None
            if item.vector is None
            else rng.normal(size=item.vector.shape).astype(np.float32) * 0.1,
        )
        for path, item in real.by_path.items()
    }
    noise = Embeddings(real.pipeline, real.model, scrambled)
    result = evaluate_pipeline(inputs, noise, quality_edges(real, inputs.labelled.images()))
    assert 0.3 < result.eer < 0.7
    assert sanity_failures(result)


def test_report_folder_holds_json_real_pngs_and_the_summary(report: Report) -> None:
    figures = json.loads(report.json_path.read_text())
    assert set(figures["pipelines"]) == {"onnx", "face_recognition"}
    onnx = figures["pipelines"]["onnx"]
    assert onnx["eer"] == pytest.approx(report.pipelines[0].eer)
    assert onnx["det_curve_fmr_fnmr"] and onnx["fmr_points"][1]["impostor_comparisons"] > 0
    assert {p.name for p in report.plots} == {"det.png", "scores.png", "fnir_fpir.png", "gallery_growth.png"}
    for plot in report.plots:
        assert plot.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(plot) as image:
            image.verify()
        with Image.open(plot) as image:
            assert image.width > 300 and image.height > 300
    summary = report.summary_path.read_text()
    assert summary.count("of 100 travellers who are on the watchlist") == 2
    assert "when 1 in 100 who are not is wrongly flagged" in summary
    assert "| onnx | face_recognition |" in summary
    # Every rate with its count: the FMR points name the impostor comparisons they were read on.
    assert f" of {report.pipelines[0].impostor_comparisons:,}" in summary
    assert "95 % CI" in summary


def test_cli_reruns_from_the_cache_outside_the_repository(
    report: Report, faces_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # The installed console script, run from elsewhere, must find the harness (benchmarks/) too.
    out = tmp_path / "report"
    shutil.copytree(report.out_dir, out)
    script = Path(sys.executable).with_name("safepassage")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "safepassage.cli.main"]
    finished = subprocess.run(
        [
            *command,
            "evaluate",
            "--faces",
            str(faces_dir),
            "--out",
            str(out),
            "--limit",
            str(LIMIT),
            "--pipelines",
            "onnx",
            "--model-dir",
            str(model_dir),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert "of 100 travellers who are on the watchlist" in finished.stdout
    assert "0 embedded now" in finished.stderr  # every image came from the cache
    figures = json.loads((out / "figures.json").read_text())
    assert list(figures["pipelines"]) == ["onnx"]
    assert figures["pipelines"]["onnx"]["eer"] == pytest.approx(report.pipelines[0].eer)
