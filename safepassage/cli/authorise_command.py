"""`safepassage authorise`: an admin signs a live-identification authorisation for cameras.

    safepassage authorise border-watchlist --camera cam-gate-1 --camera cam-gate-2 \\
        --legal-basis "Order 2026/114 of the border court" --hours 12 --client admin-1 \\
        --out cam-gate.authorisation

The token goes into the file the camera's configuration names (`--out` writes it
owner-only; without it, it is printed). Before signing, the command asks the
server (DescribeGallery, as the admin) whether the watchlist is calibrated, and
refuses an uncalibrated one: its threshold is a default whose false positive
rate at the gallery's size was never measured. `--uncalibrated-ok` signs anyway
(and skips asking, for an admin key kept offline). The server checks the token on every
message of the camera's stream (gallery, camera, validity of at most 31 days,
the admin's certificate, which must be the one `issued_by` names) and records
its first use, with the signing certificate's serial, in the transparency log.
`--pki-dir` may be the admin's own bundle (`safepassage pki issue --bundle`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.cli.client import (
    DEFAULT_PKI,
    ClientFiles,
    ClientSetupError,
    Stubs,
    default_address,
    open_channel,
)
from safepassage.cli.commands import TIMEOUT_S, uncalibrated_watchlist
from safepassage.core import atomic_file, certificates, key_files, signing
from safepassage.core.private_files import PrivateFileRefused


def add_authorise_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("authorise", help="sign a live CCTV identification authorisation (admin)")
    parser.add_argument("gallery", help="the watchlist the cameras may search")
    parser.add_argument("--camera", action="append", required=True, help="a camera's client id; repeat")
    parser.add_argument("--legal-basis", required=True, help="the order or law that allows the search")
    parser.add_argument("--hours", type=float, required=True, help="validity from now, in hours (<= 31 days)")
    parser.add_argument("--client", default="dev-admin", help="the admin's client id (its certificate signs)")
    parser.add_argument("--pki-dir", type=Path, default=DEFAULT_PKI)
    parser.add_argument("--cert", type=Path, help="admin certificate (<pki-dir>/clients/<client>.pem)")
    parser.add_argument("--key", type=Path, help="admin key (default <pki-dir>/clients/<client>-key.pem)")
    parser.add_argument(
        "--out", type=Path, help="write the token to this file (owner-only) instead of printing it"
    )
    parser.add_argument(
        "--uncalibrated-ok",
        action="store_true",
        help="sign for a watchlist that is not calibrated (or without asking the server)",
    )
    parser.add_argument(
        "--server", default=default_address(), help="the server to ask whether it is calibrated"
    )
    parser.add_argument("--ca", type=Path, help="CA certificate to trust (default <pki-dir>/ca.pem)")


def _refuse_uncalibrated(args: argparse.Namespace) -> str | None:
    """Why the watchlist may not be authorised yet (None: it may), asked of the server as the admin."""
    try:
        files = ClientFiles.resolve(args.pki_dir, args.client, args.ca, args.cert, args.key)
        with open_channel(args.server, files) as channel:
            gallery = Stubs.connect(channel, files).galleries.DescribeGallery(
                pb.DescribeGalleryRequest(gallery_id=args.gallery), timeout=TIMEOUT_S
            )
    except ClientSetupError as error:
        return f"cannot ask the server whether {args.gallery} is calibrated: {error}"
    except grpc.RpcError as error:
        return (
            f"cannot ask the server whether {args.gallery} is calibrated:"
            f" {error.code().name}: {error.details()}"
        )
    if not uncalibrated_watchlist(gallery):
        return None
    return (
        f"watchlist {args.gallery} is not calibrated: its threshold {gallery.threshold:.3f} is a default"
        " whose false positive rate at this size was never measured. Run"
        f" `safepassage gallery calibrate {args.gallery} --impostors DIR --target-fpir 0.01` first,"
        " or pass --uncalibrated-ok"
    )


def run_authorise(args: argparse.Namespace) -> int:
    from safepassage.server.cctv_authorisation import sign

    if not args.uncalibrated_ok:
        refusal = _refuse_uncalibrated(args)
        if refusal is not None:
            print(f"error: {refusal}", file=sys.stderr)
            return 2

    clients = args.pki_dir / "clients"
    cert_path = args.cert or clients / f"{args.client}.pem"
    key_path = args.key or clients / f"{args.client}-key.pem"
    try:
        cert = certificates.parse_pem(
            cert_path.read_bytes(), f"the admin certificate {cert_path}", ValueError
        )
        key = key_files.load_private_pem(key_path, "admin key", PrivateFileRefused)
    except (OSError, ValueError) as error:
        print(f"error: cannot read the admin certificate or key: {error}", file=sys.stderr)
        return 2
    except PrivateFileRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not isinstance(key, signing.EcSigningKey):
        print("error: the admin key is not an EC key", file=sys.stderr)
        return 2
    try:
        token = sign(
            gallery_id=args.gallery,
            cameras=args.camera,
            legal_basis=args.legal_basis,
            valid_for_s=int(args.hours * 3600),
            admin_cert=cert,
            admin_key=key,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        print(token)
        return 0
    try:
        _write_owner_only(args.out, token + "\n")
    except OSError as error:
        print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
        return 2
    print(f"authorisation written to {args.out} (mode 0600); the camera's [server] authorisation names it")
    return 0


def _write_owner_only(path: Path, text: str) -> None:
    """Created 0600 (never readable by others, even for a moment); an existing file is replaced."""
    atomic_file.replace(path, text.encode("utf-8"))
