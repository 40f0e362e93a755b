"""`safepassage evaluate`: error rates of both face pipelines on a labelled face set, as a report folder.

safepassage evaluate [--faces DIR] [--pairs FILE] [--cohorts FILE] [--out-dir DIR] [--limit N]
                     [--pipelines onnx,face_recognition] [--model-dir DIR]

Runs locally (no server): the harness drives the service's own embedders and matcher
(safepassage/evaluation/). Writes figures.json, PNG plots and summary.md into --out-dir (default: a new
folder evaluation-report/<UTC time>/ in the current directory, never over tracked files), and prints
the summary; embedding progress goes to stderr. Photos are read by their bytes, as the server and the
client's import read them (the same formats); a file that is not such an image is listed in the report
with its reason and skipped, and a one-line count goes to stderr. Exit status 0 when the run completed
(files skipped or not), 2 when the inputs cannot be used at all.
"""

from __future__ import annotations

import argparse
import sys

from safepassage.evaluation.arguments import add_evaluate_arguments


def add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="verification and identification error rates of both pipelines (a report folder)"
    )
    add_evaluate_arguments(evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    # The harness (and matplotlib, the "evaluation" extra) loads only when this command runs.
    try:
        from safepassage.evaluation.run import run_from_args
    except ImportError as error:
        print(
            f"error: `safepassage evaluate` needs the evaluation, server and edge extras (no module"
            f" {getattr(error, 'name', None) or error}):"
            " `uv sync --extra evaluation --extra server --extra edge` in a checkout,"
            " or `pip install 'safepassage[evaluation,server,edge]'`",
            file=sys.stderr,
        )
        return 2
    return run_from_args(args)
