"""`safepassage edge`: run a CCTV edge client from a camera's config file.

safepassage edge run --config camera.toml [--source FILE|URL|DEVICE] [--drain-timeout S]
safepassage edge drain --config camera.toml      send what an earlier run left queued
safepassage edge status --config camera.toml     what the offline queue holds
safepassage edge models install models.tar --config camera.toml   install the model pack (models_command)

Every relative path in the camera file is taken from the file's folder, so
these commands use the same queue, device key and model pack from any
working directory.

Results are printed per track as the server answers; a progress line is
shown while a file is processed. At the end, while answers are awaited, one
line says whether the server can be reached (naming its address) and how many
queries wait, then progress every few seconds; then a summary that counts
queries, not messages. Exit status: 0
when every query was answered, 3 when some are still queued (the server
could not be reached: they are sent on the next run), 2 on a setup error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from safepassage.core.errors import SafePassageError

if TYPE_CHECKING:  # the edge stack (OpenCV, ONNX Runtime) loads only when an edge command runs
    from safepassage.camera_edge.client import EdgeClient, EdgeSummary, TrackResult, WaitProgress
    from safepassage.camera_edge.edge_loop import LoopStats

STILL_QUEUED = 3
_WAIT_REPORT_EVERY_S = 5.0  # a progress line while answers are awaited (every second on a terminal)


def add_edge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = sub.add_parser("edge", help="run a CCTV or kiosk edge client")
    actions = edge.add_subparsers(dest="edge_action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, required=True, help="the camera's TOML configuration")
    common.add_argument("--verbose", action="store_true", help="log at INFO")
    run = actions.add_parser("run", parents=[common], help="process the camera's source")
    run.add_argument("--source", help="override source.location (a file, URL, device number or folder)")
    run.add_argument("--pace", choices=["realtime", "asap"], help="override source.pace")
    run.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to wait for answers at the end"
    )
    drain = actions.add_parser("drain", parents=[common], help="send what an earlier run left queued")
    drain.add_argument("--timeout", type=float, default=60.0)
    actions.add_parser("status", parents=[common], help="what the offline queue holds")
    from safepassage.cli.kiosk_command import add_kiosk_parser
    from safepassage.cli.models_command import add_edge_models_parser

    add_kiosk_parser(actions, common)
    add_edge_models_parser(actions, common)


def _print_result(result: TrackResult) -> None:
    print(result.line(), flush=True)


def _progress(stats: LoopStats) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(
        f"frames {stats.frames} (detection {stats.detection_frames}), faces {stats.faces},"
        f" queries {stats.queries}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


class _WaitReport:
    """Prints the wait for answers: a headline at the start and whenever reachability changes."""

    def __init__(self) -> None:
        self._headline: str | None = None
        self._last_line = -1.0

    def __call__(self, progress: WaitProgress) -> None:
        tty = sys.stderr.isatty()
        if progress.unreachable:
            headline = (
                f"{progress.unreachable}: {progress.queued} queries queued;"
                f" retrying for up to {progress.left_s:.0f} s (what is left stays queued for `edge drain`)"
            )
        else:
            headline = (
                f"waiting up to {progress.left_s:.0f} s for answers to {progress.queued} queued"
                f" queries from {progress.address}"
            )
        changed = self._headline is None or bool(progress.unreachable) != self._headline.startswith(
            "server unreachable"
        )
        if changed:
            if self._headline is not None and tty:
                print(file=sys.stderr)
            self._headline = headline
            self._last_line = progress.left_s
            print(headline, file=sys.stderr, flush=True)
            return
        if tty or self._last_line - progress.left_s >= _WAIT_REPORT_EVERY_S or progress.left_s == 0:
            self._last_line = progress.left_s
            print(
                f"  still queued {progress.queued}, answered {progress.answered},"
                f" {progress.left_s:.0f} s left",
                end="\r" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )


def _report(summary: EdgeSummary) -> int:
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for line in summary.lines():
        print(line)
    return STILL_QUEUED if summary.still_queued else 0


def run_edge(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.edge_action == "kiosk":
        from safepassage.cli.kiosk_command import run_kiosk

        return run_kiosk(args)
    if args.edge_action == "models":
        from safepassage.cli.models_command import run_edge_models

        try:
            return run_edge_models(args)
        except SafePassageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    from safepassage.camera_edge.client import EdgeClient
    from safepassage.camera_edge.config import load_edge_config
    from safepassage.camera_edge.outbox import Outbox

    overrides: dict[str, object] = {}
    if getattr(args, "source", None):
        overrides["source.location"] = args.source
    if getattr(args, "pace", None):
        overrides["source.pace"] = args.pace
    client: EdgeClient | None = None
    try:
        config = load_edge_config(args.config, overrides)
        if args.edge_action == "status":
            with_key = config.queue.device_key(create=False)  # a look at the queue makes no key
            outbox = Outbox.open(config.queue.path, with_key, max_entries=config.queue.max_entries)
            try:
                stats = outbox.stats()
            finally:
                outbox.close()
            print(
                f"pending {stats.pending}, answered {stats.answered} ({stats.hits} hits),"
                f" failed {stats.failed},"
                f" dropped when full {stats.dropped_when_full}, quarantined {stats.quarantined},"
                f" enqueued in all {stats.total_enqueued}"
            )
            return 0
        client = EdgeClient(config, on_result=_print_result, on_progress=_progress, on_wait=_WaitReport())
        if args.edge_action == "drain":
            return _report(client.drain(args.timeout))
        return _report(client.run(drain_timeout_s=args.drain_timeout))
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: queued queries stay in the outbox for the next run", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
