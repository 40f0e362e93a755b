"""Moving the model pack to an edge box, which cannot build it (no dlib, no onnx there).

safepassage models export --out models.tar [--models var/models]        where the pack is built
safepassage edge models install models.tar --config camera.toml        on the camera unit or kiosk

Install verifies every file's sha256 against the archive's manifest before the
pack replaces the camera's `detection.model_dir` (see safepassage/model_pack/archive.py).
Exit status: 0 done, 2 refused (nothing installed or written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safepassage.core.errors import SafePassageError

DEFAULT_MODELS = Path("var/models")


def add_models_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="the model pack: export it for edge devices")
    actions = models.add_subparsers(dest="models_action", required=True)
    export = actions.add_parser("export", help="write the verified model pack as one archive")
    export.add_argument("--out", type=Path, required=True, help="the archive to write (a .tar file)")
    export.add_argument(
        "--models",
        type=Path,
        default=DEFAULT_MODELS,
        help=f"the model pack folder (default {DEFAULT_MODELS})",
    )


def add_edge_models_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    models = actions.add_parser("models", help="install the model pack on this device")
    steps = models.add_subparsers(dest="models_action", required=True)
    install = steps.add_parser(
        "install", parents=[common], help="verify an archive from `safepassage models export` and install it"
    )
    install.add_argument("archive", type=Path, help="the archive made by `safepassage models export`")


def _print_pack(verb: str, where: Path, models: dict[str, tuple[str, str]]) -> None:
    print(f"{verb} {where}:")
    for key, (sha256, file) in sorted(models.items()):
        print(f"  {key:<24} {sha256[:16]}  {file}")


def run_models(args: argparse.Namespace) -> int:
    from safepassage.model_pack.archive import export_pack

    try:
        pack = export_pack(args.models, args.out)
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_pack("exported to", args.out, {k: (e.sha256, e.file) for k, e in pack.models.items()})
    return 0


def run_edge_models(args: argparse.Namespace) -> int:
    """`edge models install`: the caller reports SafePassageError."""
    from safepassage.camera_edge.config import load_edge_config
    from safepassage.model_pack.archive import install_pack

    config = load_edge_config(args.config)
    pack = install_pack(args.archive, config.detection.model_dir)
    _print_pack("installed in", pack.folder, {k: (e.sha256, e.file) for k, e in pack.models.items()})
    return 0
