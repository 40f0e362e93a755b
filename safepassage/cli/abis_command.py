"""`safepassage abis serve --config abis.toml`: the MOSIP ABIS adapter (safepassage.abis).

Runs until SIGTERM or Ctrl-C: the jobs in hand are finished and answered, the rest stay on the
broker, unacknowledged, for the next start. Exit status 2 on a setup error (the message names
the setting). Needs the ``abis`` extra (stomp.py) and the server's (the matcher, the face pipeline).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from safepassage.core.errors import SafePassageError

if TYPE_CHECKING:  # the abis extra: imported by run_abis, with an install hint if missing
    from safepassage.abis.service import AbisService

log = logging.getLogger(__name__)


def add_abis_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    abis = sub.add_parser("abis", help="the MOSIP ABIS adapter").add_subparsers(dest="action", required=True)
    serve = abis.add_parser("serve", help="answer MOSIP's ABIS queue through the matcher")
    serve.add_argument("--config", type=Path, required=True, help="the adapter's TOML configuration")
    calibrate = abis.add_parser(
        "calibrate", help="set the gallery's threshold for targetFPIR from photos of people not in it"
    )
    calibrate.add_argument("--config", type=Path, required=True, help="the adapter's TOML configuration")
    calibrate.add_argument("--impostors", type=Path, required=True, help="a folder of photos of strangers")
    calibrate.add_argument("--target-fpir", type=float, required=True, help="the FPIR the threshold follows")
    calibrate.add_argument(
        "--background-cohort", action="store_true", help="keep half as a background cohort"
    )


def run_abis(args: argparse.Namespace) -> int:
    try:
        from safepassage.abis import load_abis_config
        from safepassage.abis.service import AbisService
    except ImportError as error:
        print(
            f"error: {error.name} is missing: install with `uv sync --extra server --extra abis`",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = AbisService(load_abis_config(args.config))
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.action == "calibrate":
        return _calibrate(service, args)

    def stop(signum: int, frame: FrameType | None) -> None:
        service.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        service.run()
    finally:
        service.close()
    return 0


def _calibrate(service: AbisService, args: argparse.Namespace) -> int:
    """Run with the adapter stopped: a running one keeps the gallery's old calibration in memory."""
    from safepassage.core.image_formats import IMAGE_SUFFIXES

    try:
        if not args.impostors.is_dir():
            print(f"error: --impostors {args.impostors}: not a folder", file=sys.stderr)
            return 2
        photos = [
            p.read_bytes() for p in sorted(args.impostors.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        info, unusable = service.references.calibrate(
            photos, args.target_fpir, background_cohort=args.background_cohort
        )
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        service.close()
    print(
        f"gallery {info.spec.gallery_id}: threshold {info.spec.threshold:.4f} for FPIR {args.target_fpir:g}"
        f" at {info.size} references, from {len(photos) - unusable} photos ({unusable} without a face);"
        f" background cohort {info.background_cohort}"
    )
    return 0
