"""`safepassage credential`: check a holder credential offline, or make a device's reader key.

safepassage credential verify (--qr PNG | --text FILE) --issuer-key PEM [--issuer-key PEM ...]
                              --reader-key KEYFILE --face IMAGE [--model-dir DIR]
safepassage credential reader-key --out KEYFILE

``verify`` runs on the officer's device with no server: it checks the
issuer's signature and the dates, opens the sealed template with the reader
key, and compares it with the one face of IMAGE. It prints VERIFIED with the
credential id, issuer, score and threshold and expiry, and exits 0; on any
failure it prints the reason and exits 1. ``reader-key`` creates the
device's X25519 reader key (0600) if it does not exist and writes its public
PEM beside it, for the NGO that issues credentials to include.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from safepassage_core.errors import SafePassageError

if TYPE_CHECKING:  # the edge stack (OpenCV, ONNX Runtime) loads only when a credential is verified
    from camera_edge.pipeline import RgbImage

__all__ = ["add_credential_parser", "run_credential"]

DEFAULT_MODEL_DIR = Path("var/models")
FAILED = 1


def add_credential_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    credential = sub.add_parser("credential", help="check a holder credential offline; make a reader key")
    actions = credential.add_subparsers(dest="credential_action", required=True)
    verify = actions.add_parser("verify", help="verify a credential and match it to a live face, offline")
    shown = verify.add_mutually_exclusive_group(required=True)
    shown.add_argument("--qr", type=Path, metavar="PNG", help="a picture of the credential's QR code")
    shown.add_argument(
        "--text", type=Path, metavar="FILE", help="a file holding the credential's text (SP1:...)"
    )
    verify.add_argument(
        "--issuer-key",
        type=Path,
        action="append",
        required=True,
        metavar="PEM",
        help="an issuer public key this device trusts (repeat for several)",
    )
    verify.add_argument(
        "--reader-key", type=Path, required=True, metavar="KEYFILE", help="this device's reader key"
    )
    verify.add_argument(
        "--face", type=Path, required=True, metavar="IMAGE", help="the live capture of the holder"
    )
    verify.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help=f"the model pack (default {DEFAULT_MODEL_DIR})",
    )
    verify.add_argument("--verbose", action="store_true", help="log at INFO")
    reader = actions.add_parser("reader-key", help="create this device's reader key and write its public PEM")
    reader.add_argument(
        "--out", type=Path, required=True, metavar="KEYFILE", help="the private key file (0600)"
    )


class _Failure(Exception):
    """A command-line input that cannot be used (missing or unreadable file)."""


def _read_bytes(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as source:
            data = source.read(limit + 1)
    except OSError as error:
        raise _Failure(f"cannot read the {what} {str(path)!r}: {error.strerror}") from None
    if len(data) > limit:
        raise _Failure(f"the {what} {str(path)!r} is larger than {limit} bytes")
    return data


def _credential_text(args: argparse.Namespace) -> str:
    from holder_credential import MAX_TEXT_CHARS, MalformedCredential, read_qr
    from holder_credential.qr import MAX_IMAGE_BYTES

    if args.qr is not None:
        return read_qr(_read_bytes(args.qr, MAX_IMAGE_BYTES, "QR image"))
    data = _read_bytes(args.text, 4 * MAX_TEXT_CHARS, "credential text file")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedCredential(f"the credential text file {str(args.text)!r} is not UTF-8 text") from None


def _live_face(path: Path) -> RgbImage:
    import cv2
    import numpy as np

    data = _read_bytes(path, 50 * 1024 * 1024, "face image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise _Failure(f"the face image {str(path)!r} is not a readable image")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _verify(args: argparse.Namespace) -> int:
    from camera_edge.holder_check import HolderCheck
    from camera_edge.pipeline import PipelineSettings, load_pipeline
    from holder_credential import ReaderKey, TrustedIssuers

    text = _credential_text(args)
    trusted = TrustedIssuers.from_files(args.issuer_key)
    reader = ReaderKey.load(args.reader_key)
    live = _live_face(args.face)
    pipeline = load_pipeline(PipelineSettings(model_dir=args.model_dir))
    result = HolderCheck(pipeline, trusted, reader).check(text, live)
    print(result.line())
    return 0


def _reader_key(args: argparse.Namespace) -> int:
    from holder_credential import ReaderKey, public_pem_path, write_public_pem

    existed = args.out.exists()
    key = ReaderKey.load_or_create(args.out)
    public = public_pem_path(args.out)
    write_public_pem(public, key.public_pem())
    state = "using the existing" if existed else "created a new"
    print(f"{state} reader key {key.key_id} in {args.out}")
    print(f"public key written to {public}")
    return 0


def run_credential(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.credential_action == "reader-key":
            return _reader_key(args)
        return _verify(args)
    except (SafePassageError, _Failure) as error:
        print(
            f"NOT VERIFIED: {error}" if args.credential_action == "verify" else f"error: {error}",
            file=sys.stderr,
        )
        return FAILED
