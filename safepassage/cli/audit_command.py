"""`safepassage audit`: export the transparency log, verify an export offline, or run a witness.

safepassage audit export --log FILE --out-dir FOLDER [--signing-key PEM]
safepassage audit verify FOLDER [--key PEM] [--known TREE_HEADS_FILE] [--state FILE]
                         [--witness-key PEM ...] [--require-cosigned] [--witness-url URL]
safepassage audit witness init --state DIR --name NAME
safepassage audit witness add-log --state DIR --log-key PEM
safepassage audit witness serve --state DIR [--listen HOST:PORT]

Neither export nor verify talks to a server: export reads the log's SQLite
file, verify reads the folder (and, with --witness-url, asks the witness for
the newest head it cosigned). Exit status of verify: 0 passed, 1 failed (the
reason on stderr), 2 could not start (a missing file, an unreadable key, an
unreachable witness).

``--state FILE`` is the auditor's memory: the heads it verified before must
still hold (a log cut back, or rewritten and re-signed with its own key,
fails), and a passing audit adds the newest head to it.

The witness runs on another host (or at least as another user), with its own
key and state folder: it cosigns each tree head the server sends only if a
consistency proof shows it extends the last head it cosigned, and refuses
rollbacks and forks (:mod:`safepassage.audit.witness`).

Wiring into ``safepassage.cli.main``: call ``add_audit_parser(sub)`` in
``_parser()`` and, in ``main()``, ``if args.command == "audit": return run_audit(args)``
before a channel is opened.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from safepassage.audit import (
    AuditFailure,
    AuditLogError,
    AuditorState,
    SignatureError,
    SignedTreeHead,
    TransparencyLog,
    UnknownLog,
    Witness,
    WitnessClient,
    WitnessRefused,
    WitnessServer,
    WitnessUnavailable,
    audit,
    export_log,
    key_id,
    load_public_key,
    load_signing_key,
    read_tree_heads_file,
)
from safepassage.audit.export import PUBLIC_KEY_FILE
from safepassage.audit.witness import PUBLIC_KEY_FILE as WITNESS_PUBLIC_KEY_FILE
from safepassage.core.private_files import PrivateFileRefused
from safepassage.core.signing import VerifyingKey

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
    export.add_argument(
        "--out-dir",
        "--out",  # the older spelling
        dest="out",
        type=Path,
        required=True,
        metavar="FOLDER",
        help="folder to write (created if missing)",
    )
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
    verify.add_argument(
        "--state",
        type=Path,
        help="the auditor's own file of heads verified before (made on first use): each must still"
        " hold, and a pass adds the newest",
    )
    verify.add_argument(
        "--witness-key",
        type=Path,
        action="append",
        default=[],
        help="a witness's public key (PEM): its cosignatures must verify and match this export",
    )
    verify.add_argument(
        "--require-cosigned",
        action="store_true",
        help="fail unless every --witness-key cosigned the newest tree head",
    )
    verify.add_argument(
        "--witness-url",
        help="ask this witness (of the one --witness-key) for the newest head it cosigned; it must hold",
    )
    verify.set_defaults(audit_run=_verify)

    witness = actions.add_parser(
        "witness", help="run a witness that cosigns only heads extending what it saw"
    )
    steps = witness.add_subparsers(dest="witness_action", required=True)
    init = steps.add_parser("init", help="make a witness: its own key and state folder")
    init.add_argument("--state", type=Path, required=True, help="the witness's folder (not the server's)")
    init.add_argument("--name", required=True, help="the witness's name, e.g. witness.example.org")
    init.set_defaults(audit_run=_witness_init)
    add_log = steps.add_parser("add-log", help="witness a log from now on")
    add_log.add_argument("--state", type=Path, required=True)
    add_log.add_argument("--log-key", type=Path, required=True, help="the log's public key (PEM)")
    add_log.set_defaults(audit_run=_witness_add_log)
    serve = steps.add_parser("serve", help="answer over HTTP until SIGINT or SIGTERM")
    serve.add_argument("--state", type=Path, required=True)
    serve.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default 127.0.0.1:0, a free port)")
    serve.set_defaults(audit_run=_witness_serve)
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
    if summary.tree_size < summary.entries:
        # `audit verify` checks what a signed head covers: say so now, not at the auditor's desk.
        print(
            f"note: {summary.entries - summary.tree_size} entries are not yet under a signed tree head"
            " (the server signs one every audit.tree_head_interval_s and at shutdown);"
            " on the server's host, --signing-key KEY signs one over everything first",
            file=sys.stderr,
        )
    return 0


def _witness_head(args: argparse.Namespace, witnesses: list[VerifyingKey]) -> SignedTreeHead | None:
    """The newest head the --witness-url witness cosigned for this log (checked), if it has one."""
    if len(witnesses) != 1:
        raise ValueError("--witness-url needs exactly one --witness-key: the key of that witness")
    log_pem = args.key if args.key is not None else args.folder / PUBLIC_KEY_FILE
    seen = WitnessClient(args.witness_url, witnesses[0]).latest(load_public_key(log_pem.read_bytes()))
    return None if seen is None else seen.tree_head


def _verify(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    pinned = load_public_key(args.key.read_bytes()) if args.key is not None else None
    witnesses = [load_public_key(path.read_bytes()) for path in args.witness_key]
    if args.require_cosigned and not witnesses:
        print("error: --require-cosigned needs --witness-key", file=sys.stderr)
        return 2
    known: list[SignedTreeHead] = []
    for path in args.known:
        known.extend(read_tree_heads_file(path))
    state = AuditorState(args.state) if args.state is not None else None
    if state is not None:
        known.extend(state.heads())
    if args.witness_url is not None:
        seen = _witness_head(args, witnesses)
        if seen is not None:
            known.append(seen)
    try:
        report = audit(
            args.folder,
            public_key=pinned,
            known_heads=known,
            witness_keys=witnesses,
            require_cosigned=args.require_cosigned,
        )
    except AuditFailure as failure:
        print(f"AUDIT FAILED: {failure}", file=sys.stderr)
        return 1
    print(report.summary())
    if pinned is None:
        print("note: no --key given; compare the log key above with the one the operator publishes")
    if state is not None:
        first = not state.exists()
        state.remember(report.latest)
        if first:
            print(
                f"state: first audit with {state.path}; it now holds the newest head (trusted on first use)"
            )
        else:
            print(
                f"state: consistent with the heads in {state.path};"
                f" it now ends at size {report.latest.tree_size}"
            )
    return 0


def _witness_init(args: argparse.Namespace) -> int:
    witness = Witness.create(args.state, args.name)
    print(f"witness {witness.name}, key {witness.key_id}")
    print(f"give servers and auditors {args.state / WITNESS_PUBLIC_KEY_FILE}")
    return 0


def _witness_add_log(args: argparse.Namespace) -> int:
    witness = Witness.open(args.state)
    log_id = witness.add_log(load_public_key(args.log_key.read_bytes()))
    print(f"witness {witness.name} witnesses log {log_id}")
    return 0


def _witness_serve(args: argparse.Namespace) -> int:
    host, _, port = str(args.listen).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("--listen is HOST:PORT")
    witness = Witness.open(args.state)
    server = WitnessServer(witness, host.strip("[]"), int(port))

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return: not from the thread running it.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logs = ", ".join(witness.logs()) or "none yet (audit witness add-log)"
    print(f"witness {witness.name} (key {key_id(witness.public_key)}) of logs {logs}", flush=True)
    print(f"witness listening on {server.url}", flush=True)
    server.serve_forever()
    print("witness stopped", flush=True)
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Run the parsed ``audit`` command; returns the exit status."""
    try:
        status: int = args.audit_run(args)
    except AuditFailure as failure:  # a malformed --known or --state file
        print(f"AUDIT FAILED: {failure}", file=sys.stderr)
        return 1
    except (UnknownLog, WitnessUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (WitnessRefused, SignatureError) as error:  # the witness answered with no head of this log
        print(f"AUDIT FAILED: {error}", file=sys.stderr)
        return 1
    except (AuditLogError, PrivateFileRefused, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m safepassage.cli.audit_command``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="safepassage")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    return run_audit(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
