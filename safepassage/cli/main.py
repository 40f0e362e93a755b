"""`safepassage`: run the server, or talk to a running one.

safepassage serve [--config FILE]
safepassage gallery create|list|describe|delete ...
safepassage enrol GALLERY REFERENCE IMAGE
safepassage import GALLERY FOLDER
safepassage identify GALLERY IMAGE
safepassage verify GALLERY REFERENCE IMAGE
safepassage verify-document --dg2 FILE [--sod FILE] [--dg1 FILE] IMAGE   (a passport chip's photo)
safepassage count GALLERY | delete GALLERY REFERENCE | health
safepassage edge run|drain|status|kiosk --config CAMERA.toml
safepassage models export --out models.tar; safepassage edge models install models.tar --config CAMERA.toml
safepassage records enrol|consent|grant|withdraw|credential|verify-holder|erase|... (protected records)
safepassage credential verify --qr PNG --issuer-key PEM --reader-key KEY --face IMG   (offline)
safepassage evaluate [--faces DIR] [--pairs FILE] [--cohorts FILE] [--out-dir DIR] [--limit N]  (offline)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import grpc

from safepassage.cli import commands, pki_command
from safepassage.cli.abis_command import add_abis_parser, run_abis
from safepassage.cli.audit_command import add_audit_parser, run_audit
from safepassage.cli.authorise_command import add_authorise_parser, run_authorise
from safepassage.cli.client import (
    SERVER_ENV,
    ClientFiles,
    ClientSetupError,
    Stubs,
    add_connection_arguments,
    open_channel,
)
from safepassage.cli.credential_command import add_credential_parser, run_credential
from safepassage.cli.edge_command import add_edge_parser, run_edge
from safepassage.cli.evaluate_command import add_evaluate_parser, run_evaluate
from safepassage.cli.models_command import add_models_parser, run_models
from safepassage.cli.records_command import add_records_parser, run_local

Command = Callable[[Stubs, argparse.Namespace], int | None]  # None: success


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, naming the flag or value and where the help is (exit status 2).

    Every sub-command's parser is of this class too (add_subparsers makes them so).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    # Typed as the base class: the sub-command modules take ArgumentParser sub-parsers.
    parser: argparse.ArgumentParser = _Parser(prog="safepassage", description="SafePassage matching service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the matching server")
    serve.add_argument("--config", type=Path, help="TOML configuration (default: embedded defaults)")
    serve.add_argument("--port", type=int, help="override listen.port (0: a free port, for the console too)")
    serve.add_argument("--console-port", type=int, help="override console.port (the console's HTTPS port)")
    serve.add_argument("--data-dir", type=Path, help="override storage.data_dir")

    pki_command.add_pki_parser(sub)
    add_abis_parser(sub)
    add_audit_parser(sub)
    add_authorise_parser(sub)
    add_edge_parser(sub)
    add_evaluate_parser(sub)
    add_models_parser(sub)

    client = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(client)

    def add(
        name: str,
        run: Command,
        help_text: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
        extra: tuple[argparse.ArgumentParser, ...] = (),
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = parent.add_parser(name, parents=[client, *extra], help=help_text)
        command.set_defaults(run=run)
        return command

    add("health", commands.health, "check that the server is serving")
    gallery = sub.add_parser("gallery", help="manage galleries").add_subparsers(dest="action", required=True)
    create = add("create", commands.gallery_create, "create a gallery", gallery)
    create.add_argument("gallery")
    create.add_argument("--purpose", choices=["watchlist", "protected_identity"], default="watchlist")
    create.add_argument("--threshold", type=float)
    create.add_argument(
        "--protect", action="store_true", help="store templates under the deployment's transform"
    )
    calibrate = add(
        "calibrate", commands.gallery_calibrate, "measure impostor scores for FPIR thresholds", gallery
    )
    calibrate.add_argument("gallery")
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--impostors", type=Path, help="folder of photos of people not in the gallery")
    source.add_argument(
        "--leave-one-out", type=int, metavar="N", help="search N own templates against the rest"
    )
    calibrate.add_argument("--target-fpir", type=float, help="make the threshold follow this FPIR")
    calibrate.add_argument(
        "--background-cohort",
        action="store_true",
        help="keep half the impostors as a background cohort that normalises every search's scores",
    )
    add(
        "renew-protection",
        commands.renew_protection,
        "new template-protection key, templates rewritten",
        gallery,
    )
    add("list", commands.gallery_list, "list galleries", gallery)
    add("describe", commands.gallery_describe, "describe a gallery", gallery).add_argument("gallery")
    add("delete", commands.gallery_delete, "delete a gallery and erase its templates", gallery).add_argument(
        "gallery"
    )

    enrol = add("enrol", commands.enrol, "enrol a subject from the face in one or more images")
    enrol.add_argument("gallery")
    enrol.add_argument("reference")
    enrol.add_argument("images", type=Path, nargs="+", metavar="image", help="each one a capture")
    enrol.add_argument("--add", action="store_true", help="add captures to an enrolled subject")
    enrol.add_argument("--largest", action="store_true", help="take the largest face if there are several")
    bulk = add(
        "import",
        commands.bulk_import,
        "enrol every image of a folder (reference id = file name; a sub-folder = one subject's captures)",
    )
    bulk.add_argument("gallery")
    bulk.add_argument("folder", type=Path)
    bulk.add_argument("--largest", action="store_true")
    identify = add("identify", commands.identify, "search a gallery (1:N, or 1:few with --restrict-to)")
    identify.add_argument("gallery")
    identify.add_argument("image", type=Path)
    identify.add_argument("--top-k", type=int, default=5)
    threshold = identify.add_mutually_exclusive_group()
    threshold.add_argument("--threshold", type=float)
    threshold.add_argument(
        "--target-fpir", type=float, help="the threshold for this FPIR (calibrated galleries)"
    )
    identify.add_argument("--restrict-to", nargs="+", metavar="REFERENCE")
    verify = add("verify", commands.verify, "compare a face with one reference (1:1)")
    verify.add_argument("gallery")
    verify.add_argument("reference")
    verify.add_argument("image", type=Path)
    verify.add_argument("--threshold", type=float)
    verify.add_argument("--largest", action="store_true")
    document = add(
        "verify-document",
        commands.verify_document,
        "compare a face with a passport chip's photo (DG2), checking the chip's SOD (passive authentication)",
    )
    document.add_argument("--dg2", type=Path, required=True, help="EF.DG2 as read from the chip")
    document.add_argument("--sod", type=Path, help="EF.SOD: without it the document is not authenticated")
    document.add_argument("--dg1", type=Path, help="EF.DG1 (the MRZ): its check digits, and its hash")
    document.add_argument("image", type=Path, help="the live photo of the traveller")
    document.add_argument("--largest", action="store_true")
    add("count", commands.count, "number of templates in a gallery").add_argument("gallery")
    delete = add("delete", commands.delete, "delete one template")
    delete.add_argument("gallery")
    delete.add_argument("reference")
    add_records_parser(sub, add)
    add_credential_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:  # the server side is imported only by this command, and installed only with its extra
        from safepassage import app as server
        from safepassage.server.config import load_config
    except ModuleNotFoundError as error:
        print(
            f"error: the server is not installed here (no module {error.name}); install the server extra:"
            " `uv sync --extra server` in a checkout, or `pip install 'safepassage[server]'`",
            file=sys.stderr,
        )
        return 2

    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["listen.port"] = args.port
        if args.port == 0:  # free ports asked for (tests, several servers at once): the console's too
            overrides["console.port"] = 0
    if args.console_port is not None:
        overrides["console.port"] = args.console_port
    if args.data_dir is not None:
        overrides["storage.data_dir"] = str(args.data_dir)
    config = load_config(args.config, overrides)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.serve(config)
    return 0


def _log_certificate_change(pki_dir: Path) -> Callable[[str, dict[str, str]], None]:
    """Certificate changes go into the server's transparency log (on the server's host)."""

    def append(operation: str, metadata: dict[str, str]) -> None:
        from safepassage.audit import LogEvent, TransparencyLog, load_or_create_signing_key
        from safepassage.server.config import load_config

        data_dir = pki_dir.parent
        log_path, key_path = (
            data_dir / "audit" / "transparency.sqlite3",
            load_config(None, {"storage.data_dir": str(data_dir)}).audit_key_path,
        )
        if not key_path.exists():
            print(f"warning: no transparency log at {log_path}; {operation} is not recorded", file=sys.stderr)
            return
        with TransparencyLog.open(log_path, load_or_create_signing_key(key_path)) as transparency_log:
            transparency_log.append(LogEvent.now("pki", operation, details=metadata))

    return append


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pki":
        return pki_command.run(args, on_change=_log_certificate_change(args.pki_dir))
    if args.command == "abis":
        return run_abis(args)
    if args.command == "audit":
        return run_audit(args)
    if args.command == "authorise":
        return run_authorise(args)
    if args.command == "edge":
        return run_edge(args)
    if args.command == "credential":
        return run_credential(args)
    if args.command == "evaluate":
        return run_evaluate(args)
    if args.command == "models":
        return run_models(args)
    if args.command == "records":
        local = run_local(args)
        if local is not None:
            return local
    if args.command == "serve":
        try:
            return _serve(args)
        except Exception as error:  # the safepassage errors say what is wrong
            from safepassage.core.errors import SafePassageError

            if isinstance(error, SafePassageError):
                print(f"error: {error}", file=sys.stderr)
                return 2
            raise
    for path_arg in ("image", "folder", "impostors"):
        path = getattr(args, path_arg, None)
        if path is not None and not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    try:
        files = (
            None
            if args.plaintext
            else ClientFiles.resolve(args.pki_dir, args.client, args.ca, args.cert, args.key)
        )
        channel = open_channel(args.server, files, args.plaintext)
    except ClientSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from safepassage.core.errors import SafePassageError

    with channel:
        try:
            status = args.run(Stubs.connect(channel, files), args)
        except grpc.RpcError as error:
            print(f"error: {_refusal(error, args.server)}", file=sys.stderr)
            return 1
        except (ClientSetupError, SafePassageError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # a file a command reads or writes; the commands name their flags
            print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
            return 2
    return int(status or 0)


def _refusal(error: grpc.RpcError, server: str) -> str:
    """One line: the status and the server's reason; where the server could not be reached, which one."""
    code: grpc.StatusCode = error.code()
    details = " ".join(str(error.details() or "").split())
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"{code.name}: {details} (server {server}: --server or ${SERVER_ENV})"
    return f"{code.name}: {details}"


if __name__ == "__main__":
    sys.exit(main())
