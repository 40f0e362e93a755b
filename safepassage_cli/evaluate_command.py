"""`safepassage evaluate`: error rates of both face pipelines on a labelled face set, as a report folder.

safepassage evaluate [--faces DIR] [--pairs FILE] [--cohorts FILE] [--out-dir DIR] [--limit N]
                     [--pipelines onnx,face_recognition] [--model-dir DIR]

Runs locally (no server): the harness drives the service's own embedders and matcher
(benchmarks/evaluation/). Writes figures.json, PNG plots and summary.md into --out-dir (default: a new
folder evaluation-report/<UTC time>/ in the current directory, never over tracked files), and prints
the summary; embedding progress goes to stderr. Photos are read by their bytes, as the server and the
client's import read them (the same formats); a file that is not such an image is listed in the report
with its reason and skipped, and a one-line count goes to stderr. Exit status 0 when the run completed
(files skipped or not), 2 when the inputs cannot be used at all.
"""

from __future__ import annotations

import argparse
import sys
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


def add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="verification and identification error rates of both pipelines (a report folder)"
    )
    add_evaluate_arguments(evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    # The harness (and matplotlib, the "evaluation" extra) loads only when this command runs.
    try:
        from benchmarks.evaluation.run import run_from_args
    except ImportError as error:
        print(
            f"error: the evaluation harness cannot be loaded ({error}); run from a source checkout"
            " with `uv sync --extra evaluation --extra server --extra edge`",
            file=sys.stderr,
        )
        return 2
    return run_from_args(args)
