"""`safepassage pki`: the deployment's CA, server and client certificates, on the PKI folder itself.

safepassage pki init [--server-name NAME ...]
safepassage pki issue CLIENT_ID --role ROLE --bundle PATH [--organisation ORG] [--days N] [--replace]
safepassage pki issue-server [NAME ...] [--days N]
safepassage pki issue-console [--days N]
safepassage pki revoke CLIENT_ID|SERIAL
safepassage pki list [--json]

These work on files, not through the server: they need the CA key, which
the server never reads. A running server honours a revocation on its next
call; a new server certificate when it restarts. NGO caseworkers and kiosks
act for one organisation: their certificates must name it (--organisation).

A client's private key is written only to its bundle (--bundle PATH: a new
0700 folder with the key, the certificate and the CA certificate, to hand to
the client; `--pki-dir PATH --client ID` then connects with it): the PKI
folder keeps no copy. Only a development PKI, made by the server's first run,
keeps its clients' keys in clients/ when no bundle is asked for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path

from safepassage.core.errors import SafePassageError
from safepassage.server.certificate_index import CertificateKind, ChangeHook, fingerprint_of
from safepassage.server.client_bundle import ClientBundle
from safepassage.server.identity import Role
from safepassage.server.pki_folder import InvalidCertificateRequest, format_serial
from safepassage.server.pki_issuance import DEFAULT_SERVER_NAMES, IssuedCert, Pki

DEFAULT_PKI_DIR = Path("var/safepassage/pki")

PkiAction = Callable[[argparse.Namespace, ChangeHook | None], None]


def _date(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print_issued(issued: IssuedCert) -> None:
    if issued.record.kind is CertificateKind.CONSOLE:
        what = "the console"
    elif issued.role is None:
        what = f"server {issued.client_id}"
    elif issued.organisation:
        what = f"{issued.client_id} ({issued.role.value}, {issued.organisation})"
    else:
        what = f"{issued.client_id} ({issued.role.value})"
    print(f"issued {what}: serial {format_serial(issued.serial)}, valid until {_date(issued.not_after)}")
    print(f"  certificate: {issued.cert_path}")
    if issued.key_path is not None:
        print(f"  key:         {issued.key_path} (mode 0600)")


def _warn_stray_keys(pki: Pki) -> None:
    stray = pki.stray_client_keys()
    if stray:
        names = ", ".join(path.name for path in stray)
        print(
            f"warning: {len(stray)} client keys lie in {pki.paths.clients} ({names}), left by an earlier"
            " version: whoever reads this folder can act as those clients. Give each client a bundle"
            " (revoke its certificate, `pki issue ID --role ROLE --bundle PATH`), which it connects with"
            " (--pki-dir PATH --client ID), then delete the key here: commands that name this folder"
            " as --pki-dir cannot connect as that client any more",
            file=sys.stderr,
        )


def init(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    names = tuple(args.server_name or DEFAULT_SERVER_NAMES)
    pki = Pki.init(args.pki_dir, names, on_change=on_change)
    print(f"initialised the PKI in {pki.folder}")
    print(f"  CA:     {pki.paths.ca_cert} (valid until {_date(pki.ca_cert.not_valid_after_utc)})")
    print(f"          sha256 {fingerprint_of(pki.ca_cert)}")
    print(f"  CA key: {pki.paths.ca_key} (mode 0600; the server does not need it: keep it offline)")
    print(f"  server: {pki.paths.server_cert} for {', '.join(names)}")


def issue(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    pki = Pki.open(args.pki_dir, on_change=on_change)
    _warn_stray_keys(pki)
    if args.bundle is None and not pki.development:
        raise InvalidCertificateRequest(
            f"{pki.folder} keeps no client keys: pass --bundle PATH, a new folder to write the"
            " client's key, certificate and the CA certificate to, and hand it to the client"
        )
    earlier = [
        r
        for r in pki.list()
        if r.kind is CertificateKind.CLIENT and r.client_id == args.client_id and r.status() == "valid"
    ]
    bundle = ClientBundle.reserve(args.bundle, pki.folder) if args.bundle is not None else None
    try:
        issued = pki.issue_client(
            args.client_id,
            args.role,
            args.days,
            replace=args.replace,
            organisation=args.organisation,
            keep_key=None if bundle is None else False,
        )
    except BaseException:
        if bundle is not None:
            bundle.release()
        raise
    if bundle is not None:
        bundle.write(issued, pki.ca_pem)
    _print_issued(issued)
    if bundle is not None:
        print(f"  bundle:      {bundle.folder} (mode 0700; the key in it is the only copy, mode 0600)")
        print("  hand the bundle to the client over a secure channel; it connects with")
        print(f"  --pki-dir {bundle.folder} --client {issued.client_id}")
    else:
        print("  development PKI: the key stays here for the command line on this machine")
    for record in earlier:
        # Revoking by client id would revoke the new certificate too.
        print(
            f"  its earlier certificate stays valid until revoked:"
            f" safepassage pki revoke {format_serial(record.serial)}"
        )


def issue_server(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    pki = Pki.open(args.pki_dir, on_change=on_change)
    _print_issued(pki.issue_server(tuple(args.names or DEFAULT_SERVER_NAMES), args.days))
    print("  restart the server to serve it")


def issue_console(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    pki = Pki.open(args.pki_dir, on_change=on_change)
    _print_issued(pki.issue_console(args.days))
    print("  restart the server: it pins this certificate as the only one that may act for a person")


def revoke(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    pki = Pki.open(args.pki_dir, on_change=on_change)
    revoked = pki.revoke(args.target)
    if not revoked:
        print(f"{args.target}: already revoked")
    for revocation in revoked:
        who = revocation.client_id or "a certificate not in the index"
        print(f"revoked serial {format_serial(revocation.serial)} ({who}) at {_date(revocation.revoked_at)}")


def list_certificates(args: argparse.Namespace, on_change: ChangeHook | None) -> None:
    pki = Pki.open(args.pki_dir)
    _warn_stray_keys(pki)
    records = pki.list()
    if args.json:
        rows = [
            {
                "client_id": r.client_id,
                "kind": r.kind.value,
                "role": r.role.value if r.role else None,
                "organisation": r.organisation or None,
                "serial": format_serial(r.serial),
                "not_after": r.not_after.isoformat(),
                "revoked": r.revoked,
                "status": r.status(),
            }
            for r in records
        ]
        print(json.dumps(rows, indent=1))
        return
    if not records:
        print("no certificates")
        return
    width = max(len(r.client_id) for r in records)
    organisation_width = max(len(r.organisation or "-") for r in records)
    for r in records:
        role = r.role.value if r.role else f"({r.kind.value})"
        organisation = r.organisation or "-"
        print(
            f"{r.client_id:<{width}}  {role:<14}  {organisation:<{organisation_width}}"
            f"  {format_serial(r.serial):<40}  until {_date(r.not_after)}  {r.status()}"
        )


def add_pki_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `pki` and its actions; `run(args)` then carries out the parsed one."""
    pki = subparsers.add_parser("pki", help="the deployment's certificates: CA, server, clients with roles")
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument(
        "--pki-dir", type=Path, default=DEFAULT_PKI_DIR, help=f"the PKI folder (default {DEFAULT_PKI_DIR})"
    )
    actions = pki.add_subparsers(dest="pki_action", required=True)

    def add(name: str, action: PkiAction, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, parents=[folder], help=help_text)
        parser.set_defaults(pki_run=action)
        return parser

    created = add("init", init, "create the CA and the server certificate")
    created.add_argument(
        "--server-name",
        action="append",
        metavar="NAME",
        help=f"DNS name or IP the server is reached by; repeat (default {' '.join(DEFAULT_SERVER_NAMES)})",
    )
    issued = add("issue", issue, "issue a client certificate for one role")
    issued.add_argument("client_id", help="opaque account or device id, e.g. officer-0042 (never a name)")
    issued.add_argument("--role", required=True, choices=[role.value for role in Role])
    issued.add_argument(
        "--organisation",
        metavar="ORG",
        help="id of the organisation the client acts for, e.g. la-strada (a-z 0-9 -);"
        " required for ngo_caseworker and kiosk, which are bound to their organisation's records;"
        " optional for other roles",
    )
    issued.add_argument(
        "--bundle",
        type=Path,
        metavar="PATH",
        help="a new folder (0700) to write the client's key, certificate and the CA certificate to, to hand"
        " to the client; the PKI folder keeps no copy of the key. Required unless the PKI is the"
        " development one the server made on its first run",
    )
    issued.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    issued.add_argument(
        "--replace", action="store_true", help="issue even if the client has a valid certificate"
    )
    server = add("issue-server", issue_server, "issue a new server certificate (renewal, new names)")
    server.add_argument(
        "names", nargs="*", metavar="NAME", help="DNS names or IPs (default: localhost and loopback)"
    )
    server.add_argument("--days", type=int, default=365)
    console = add(
        "issue-console",
        issue_console,
        "issue the web console's certificate (console.pem, console-key.pem in the PKI folder)",
    )
    console.add_argument("--days", type=int, default=365)
    revoked = add("revoke", revoke, "revoke a client's certificates, or one certificate by serial")
    revoked.add_argument("target", metavar="CLIENT_ID|SERIAL", help="a client id, or a serial in hex")
    listed = add("list", list_certificates, "list every certificate issued, with its status")
    listed.add_argument("--json", action="store_true", help="machine-readable output")
    return pki


def run(args: argparse.Namespace, on_change: ChangeHook | None = None) -> int:
    """Carry out a parsed `pki` action; 0 on success, 2 with a message on a SafePassage error."""
    try:
        args.pki_run(args, on_change)
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
