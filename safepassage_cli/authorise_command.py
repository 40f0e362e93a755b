"""`safepassage authorise`: an admin signs a live-identification authorisation for cameras.

    safepassage authorise border-watchlist --camera cam-gate-1 --camera cam-gate-2 \\
        --legal-basis "Order 2026/114 of the border court" --hours 12 --client admin-1

The token goes into the camera's configuration; the server checks it on every
message of the camera's stream (gallery, camera, validity of at most 31 days,
the admin's certificate, which must be the one `issued_by` names) and records
its first use, with the signing certificate's serial, in the transparency log.
`--pki-dir` may be the admin's own bundle (`safepassage pki issue --bundle`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage_cli.client import DEFAULT_PKI
from safepassage_core.private_files import PrivateFileRefused, read_private


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


def run_authorise(args: argparse.Namespace) -> int:
    from safepassage_server.cctv_authorisation import sign

    clients = args.pki_dir / "clients"
    cert_path = args.cert or clients / f"{args.client}.pem"
    key_path = args.key or clients / f"{args.client}-key.pem"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = load_pem_private_key(read_private(key_path, "admin key"), password=None)
    except (OSError, ValueError) as error:
        print(f"error: cannot read the admin certificate or key: {error}", file=sys.stderr)
        return 2
    except PrivateFileRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not isinstance(key, ec.EllipticCurvePrivateKey):
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
    print(token)
    return 0
