"""`safepassage audit`: export the transparency log, or verify an export offline.

safepassage audit export --log FILE --out FOLDER [--signing-key PEM]
safepassage audit verify FOLDER [--key PEM] [--known TREE_HEADS_FILE]

Neither talks to a server: export reads the log's SQLite file, verify reads
only the folder. Exit status of verify: 0 passed, 1 failed (the reason on
stderr), 2 could not start (a missing file or unreadable key).

Wiring into ``safepassage_cli.main``: call ``add_audit_parser(sub)`` in
``_parser()`` and, in ``main()``, ``if args.command == "audit": return run_audit(args)``
before a channel is opened.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audit_log import (
    AuditFailure,
    AuditLogError,
    SignedTreeHead,
    TransparencyLog,
    audit,
    export_log,
    load_public_key,
    load_signing_key,
    read_tree_heads_file,
)

__all__ = ["add_audit_parser", "main", "run_audit"]


def add_audit_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``audit export`` and ``audit verify`` under ``subparsers``; returns the ``audit`` parser."""
    audit_parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="export the transparency log, or verify an export offline"
    )
    actions = audit_parser.add_subparsers(dest="audit_action", required=True)

    export = actions.add_parser("export", help="write the log as files an auditor can take away")
    export.add_argument("--log", type=Path, required=True, help="the transparency log's SQLite file")
    export.add_argument("--out", type=Path, required=True, help="folder to write (created if missing)")
    export.add_argument(
        "--signing-key",
        type=Path,
        help="the log's Ed25519 key (PEM): sign a tree head over everything first;"
        " without it the stored tree heads are exported as they are",
    )
    export.set_defaults(audit_run=_export)

    verify = actions.add_parser("verify", help="check an exported log: signatures, roots, consistency")
    verify.add_argument("folder", type=Path)
    verify.add_argument(
        "--key", type=Path, help="the log's public key (PEM) as the operator published it; pins the key"
    )
    verify.add_argument(
        "--known",
        type=Path,
        action="append",
        default=[],
        help="tree heads kept from an earlier audit (a tree_heads.jsonl); each must still hold",
    )
    verify.set_defaults(audit_run=_verify)
    return audit_parser


def _export(args: argparse.Namespace) -> int:
    if not args.log.is_file():
        print(f"error: {args.log} does not exist", file=sys.stderr)
        return 2
    if args.signing_key is not None:
        with TransparencyLog.open(args.log, load_signing_key(args.signing_key)) as log:
            summary = log.export(args.out)
    else:
        summary = export_log(args.log, args.out)
    print(
        f"exported {summary.entries} entries and {summary.tree_heads} tree heads"
        f" (newest covers {summary.tree_size}) to {summary.folder}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    pinned = load_public_key(args.key.read_bytes()) if args.key is not None else None
    known: list[SignedTreeHead] = []
    for path in args.known:
        known.extend(read_tree_heads_file(path))
    try:
        report = audit(args.folder, public_key=pinned, known_heads=known)
    except AuditFailure as failure:
        print(f"AUDIT FAILED: {failure}", file=sys.stderr)
        return 1
    print(report.summary())
    if pinned is None:
        print("note: no --key given; compare the log key above with the one the operator publishes")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Run the parsed ``audit`` command; returns the exit status."""
    try:
        status: int = args.audit_run(args)
    except AuditFailure as failure:  # a malformed --known file
        print(f"AUDIT FAILED: {failure}", file=sys.stderr)
        return 1
    except (AuditLogError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m safepassage_cli.audit_command``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="safepassage")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    return run_audit(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
