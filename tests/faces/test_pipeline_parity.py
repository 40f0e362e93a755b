"""The ONNX pipeline beside face_recognition on real LFW pairs (a spread of 120 pairs):
the same embedding space, and verification that is not worse.

The full run over every pair is `benchmarks/pipeline_eval.py` (figures in the README)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def report(model_dir: Path, faces_dir: Path) -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    from benchmarks.pipeline_eval import run

    return run(120, model_dir)


def test_same_embedding_space_as_face_recognition(report) -> None:  # type: ignore[no-untyped-def]
    parity = report["parity_l2"]
    assert parity["faces"] >= 220
    assert parity["share_under_0.1"] >= 0.95
    assert parity["median"] < 0.06


def test_embedding_stage_matches_dlib_on_the_same_chips(report) -> None:  # type: ignore[no-untyped-def]
    same = report["embedding_stage_same_chips"]
    assert same["chips"] >= 30
    assert same["max_abs_difference"] <= 1e-5 and same["batched_max_abs_difference"] <= 1e-5


def test_verification_is_not_worse_than_face_recognition(report) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = report["verification"]["onnx"], report["verification"]["face_recognition"]
    assert ours["pairs"] == 120
    assert ours["accuracy_at_0.6"] >= theirs["accuracy_at_0.6"]
    assert ours["tar_at_far_0"] >= theirs["tar_at_far_0"]
    assert ours["accuracy_2fold_cv"] >= 0.95
    assert report["faces_not_found"]["onnx"] <= report["faces_not_found"]["face_recognition"]
