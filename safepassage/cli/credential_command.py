"""`safepassage credential`: check a holder credential offline, make a device's reader key, sync revocations.

safepassage credential verify (--qr PNG | --text FILE) --issuer-key PEM [--issuer-key PEM ...]
                              --reader-key KEYFILE --face IMAGE [--model-dir DIR] [--revocations FILE]
safepassage credential reader-key --out KEYFILE
safepassage credential revocations --out FILE [--issuer-key PEM ...] [--server H:P --client ID ...]

``verify`` runs on the officer's device with no server: it checks the
issuer's signature and the dates, opens the sealed template with the reader
key, and compares it with the one face of IMAGE. It prints VERIFIED with the
credential id, issuer, score and threshold and expiry, and exits 0; on any
failure it prints the reason and exits 1. ``reader-key`` creates the
device's X25519 reader key (0600) if it does not exist and writes its public
PEM beside it, for the NGO that issues credentials to include.

With ``--revocations FILE`` ``verify`` also refuses a credential its issuer
has retired, and refuses to run on a list that is past its next update.
``revocations`` is the one subcommand that calls the server: it fetches the
issuer's signed revocation list, checks its signature against the issuer key
(``--issuer-key`` pins it; otherwise the server's GetPublicKeys answer over
the same mutual-TLS channel), and only then replaces FILE, atomically, so a
reader never holds a list it could not use.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safepassage.cli.client import ClientSetupError, add_connection_arguments
from safepassage.core import atomic_file
from safepassage.core.errors import SafePassageError
from safepassage.core.private_files import PUBLIC_FILE_MODE

if TYPE_CHECKING:  # the edge stack (OpenCV, ONNX Runtime) loads only when a credential is verified
    from safepassage.api.v1.protected_identity_pb2_grpc import ProtectedIdentityServiceStub
    from safepassage.credential import RevocationList, TrustedIssuers
    from safepassage.face.pipeline import RgbImage

__all__ = ["add_credential_parser", "fetch_revocations", "run_credential", "save_revocations"]

DEFAULT_MODEL_DIR = Path("var/models")
FAILED = 1
TIMEOUT_S = 60


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
    verify.add_argument(
        "--revocations",
        type=Path,
        metavar="FILE",
        help="the issuer's signed revocation list (`credential revocations`): refuse retired credentials",
    )
    verify.add_argument("--verbose", action="store_true", help="log at INFO")
    reader = actions.add_parser("reader-key", help="create this device's reader key and write its public PEM")
    reader.add_argument(
        "--out", type=Path, required=True, metavar="KEYFILE", help="the private key file (0600)"
    )
    sync = actions.add_parser(
        "revocations", help="fetch the issuer's signed revocation list from the server, check it, save it"
    )
    sync.add_argument("--out", type=Path, required=True, metavar="FILE", help="where the list is kept")
    sync.add_argument(
        "--issuer-key",
        type=Path,
        action="append",
        metavar="PEM",
        help="check the list against this issuer key (repeat for several); default: the server's own",
    )
    add_connection_arguments(sync)
    sync.add_argument("--verbose", action="store_true", help="log at INFO")


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
    from safepassage.credential import MAX_TEXT_CHARS, MalformedCredential, read_qr
    from safepassage.credential.qr import MAX_IMAGE_BYTES

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
    from safepassage.camera_edge.holder_check import HolderCheck
    from safepassage.credential import MAX_LIST_BYTES, ReaderKey, TrustedIssuers, verify_revocations
    from safepassage.face.pipeline import PipelineSettings, load_pipeline

    text = _credential_text(args)
    trusted = TrustedIssuers.from_files(args.issuer_key)
    reader = ReaderKey.load(args.reader_key)
    revocations = None
    if args.revocations is not None:
        data = _read_bytes(args.revocations, MAX_LIST_BYTES, "revocation list")
        revocations = verify_revocations(data, trusted, _now())
    live = _live_face(args.face)
    pipeline = load_pipeline(PipelineSettings(model_dir=args.model_dir))
    result = HolderCheck(pipeline, trusted, reader, revocations).check(text, live)
    print(result.line())
    return 0


def _now() -> datetime:
    return datetime.now(UTC)


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename: never half a list."""
    try:
        atomic_file.replace(path, data, mode=PUBLIC_FILE_MODE)
    except OSError as error:
        raise _Failure(f"cannot write the revocation list {str(path)!r}: {error.strerror}") from None


def save_revocations(data: bytes, trusted: TrustedIssuers, out: Path, now: datetime) -> RevocationList:
    """Verify a signed revocation list and only then replace ``out`` with it (atomically)."""
    from safepassage.credential import verify_revocations

    listed = verify_revocations(data, trusted, now)
    _replace_atomically(out, data)
    return listed


def fetch_revocations(
    stub: ProtectedIdentityServiceStub, pinned: TrustedIssuers | None
) -> tuple[bytes, TrustedIssuers]:
    """The signed list from the server, and the issuer keys to check it by (``pinned``, else the server's)."""
    from safepassage.api.v1 import protected_identity_pb2 as pb
    from safepassage.credential import IssuerPublicKey, TrustedIssuers

    answer = stub.GetCredentialRevocations(pb.GetCredentialRevocationsRequest(), timeout=TIMEOUT_S)
    if pinned is None:
        keys = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=TIMEOUT_S)
        issuer = IssuerPublicKey.from_pem(
            keys.issuer_public_pem, keys.issuer_id or None, source="the server's issuer key"
        )
        pinned = TrustedIssuers([issuer])
    return answer.signed_list, pinned


def _revocations(args: argparse.Namespace) -> int:
    import grpc

    from safepassage.api.v1.protected_identity_pb2_grpc import ProtectedIdentityServiceStub
    from safepassage.cli.client import ClientFiles, open_channel
    from safepassage.credential import TrustedIssuers

    pinned = TrustedIssuers.from_files(args.issuer_key) if args.issuer_key else None
    files = (
        None
        if args.plaintext
        else ClientFiles.resolve(args.pki_dir, args.client, args.ca, args.cert, args.key)
    )
    try:
        with open_channel(args.server, files, args.plaintext) as channel:
            data, trusted = fetch_revocations(ProtectedIdentityServiceStub(channel), pinned)
    except grpc.RpcError as error:
        raise _Failure(f"{error.code().name}: {error.details()}") from None
    listed = save_revocations(data, trusted, args.out, _now())
    print(
        f"revocation list of issuer {listed.issuer_id} (key {listed.issuer_key_id}): {len(listed)} revoked"
        f" credentials, next update due {listed.next_update.isoformat()}; written to {args.out}"
    )
    return 0


def _reader_key(args: argparse.Namespace) -> int:
    from safepassage.credential import ReaderKey, public_pem_path, write_public_pem

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
        if args.credential_action == "revocations":
            return _revocations(args)
        return _verify(args)
    except (SafePassageError, _Failure, ClientSetupError) as error:
        print(
            f"NOT VERIFIED: {error}" if args.credential_action == "verify" else f"error: {error}",
            file=sys.stderr,
        )
        return FAILED
