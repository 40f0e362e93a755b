"""The arguments of `safepassage evaluate` and `python -m safepassage.evaluation.run`: nothing heavy."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults are resolved by the harness (None here), so parsing never imports it.
    parser.add_argument(
        "--faces",
        type=Path,
        help="labelled folder, one sub-folder per identity (default ../shared/data/faces)",
    )
    parser.add_argument("--pairs", type=Path, help="LFW-style pairs file (default: the faces folder's own)")
    parser.add_argument("--cohorts", type=Path, help="CSV of identity,group rows for per-group figures")
    parser.add_argument(
        "--out-dir",
        "--out",  # the older spelling
        dest="out",
        type=Path,
        metavar="DIR",
        help="report folder, also its embedding cache (default: a new evaluation-report/<UTC time>/ here,"
        " cache in evaluation-report/embeddings/)",
    )
    parser.add_argument("--limit", type=int, help="use at most this many identities (and pairs)")
    parser.add_argument(
        "--pipelines", default="onnx,face_recognition", help="comma-separated (default: both, side by side)"
    )
    parser.add_argument("--model-dir", type=Path, help="the model pack (default var/models)")
