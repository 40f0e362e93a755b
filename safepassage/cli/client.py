"""A gRPC channel to a SafePassage server: mutual TLS with the client's certificate.

A client is named by its id (``--client officer-1``): its certificate and key
are read from ``<pki-dir>/clients/<id>.pem`` and ``<id>-key.pem``, as
`safepassage pki issue` writes them; ``--cert``/``--key`` name other files.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.core.private_files import PrivateFileRefused, read_private

DEFAULT_ADDRESS = "localhost:50051"
# Where the commands find the server when --server is not given (read when the command line is parsed).
SERVER_ENV = "SAFEPASSAGE_SERVER"
DEFAULT_PKI = Path("var/safepassage/pki")
# Made on the server's first run with development certificates.
DEFAULT_CLIENT = "dev-admin"
MESSAGE_LIMIT = 16 * 1024 * 1024


def default_address() -> str:
    """``$SAFEPASSAGE_SERVER`` if set, else localhost:50051."""
    return os.environ.get(SERVER_ENV) or DEFAULT_ADDRESS


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that talks to a server takes: where, and as which client."""
    parser.add_argument(
        "--server",
        default=default_address(),
        help=f"host:port (default ${SERVER_ENV}, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--client", default=DEFAULT_CLIENT, help=f"client id to connect as (default {DEFAULT_CLIENT})"
    )
    parser.add_argument(
        "--pki-dir", type=Path, default=DEFAULT_PKI, help=f"where client certificates are ({DEFAULT_PKI})"
    )
    parser.add_argument("--ca", type=Path, help="CA certificate to trust (default <pki-dir>/ca.pem)")
    parser.add_argument(
        "--cert", type=Path, help="client certificate (default <pki-dir>/clients/<client>.pem)"
    )
    parser.add_argument("--key", type=Path, help="client key (default <pki-dir>/clients/<client>-key.pem)")
    parser.add_argument(
        "--plaintext", action="store_true", help="no TLS (only for a server run with plaintext on localhost)"
    )


class ClientSetupError(Exception):
    """The client cannot be set up (no CA file, say)."""


@dataclass(frozen=True)
class ClientFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def resolve(
        cls,
        pki_dir: Path,
        client: str,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> ClientFiles:
        clients = pki_dir / "clients"
        return cls(
            ca or pki_dir / "ca.pem", cert or clients / f"{client}.pem", key or clients / f"{client}-key.pem"
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise ClientSetupError(
            f"cannot read the {what} {path}; `safepassage pki issue` makes client certificates"
            " (the server makes a CA and a dev-admin certificate on its first run)"
        ) from None


def _read_key(path: Path) -> bytes:
    """The client's key, refused (the file named) if group or others may read it."""
    if not path.exists():
        return _read(path, "client key")
    try:
        return read_private(path, "client key")
    except PrivateFileRefused as error:
        raise ClientSetupError(str(error)) from None


def open_channel(address: str, files: ClientFiles | None, plaintext: bool = False) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", MESSAGE_LIMIT),
    ]
    if plaintext or files is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(files.ca, "CA certificate"),
        private_key=_read_key(files.key),
        certificate_chain=_read(files.cert, "client certificate"),
    )
    return grpc.secure_channel(address, credentials, options=options)


@dataclass
class Stubs:
    channel: grpc.Channel
    galleries: pb_grpc.GalleryServiceStub
    matching: pb_grpc.MatchingServiceStub
    # The client's own certificate and key: a device signs its live captures with them.
    files: ClientFiles | None = None

    @classmethod
    def connect(cls, channel: grpc.Channel, files: ClientFiles | None = None) -> Stubs:
        return cls(channel, pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel), files)

    def sign_capture(self, image: bytes, liveness: str) -> bytes:
        """This client's signed statement that it captured `image` now (see capture_statement)."""
        from cryptography.x509.oid import NameOID

        from safepassage import credential
        from safepassage.core import certificates

        if self.files is None:
            raise ClientSetupError(
                "a live capture must be signed with the client's certificate key (no --plaintext)"
            )
        pem = _read(self.files.cert, "client certificate")
        certificate = certificates.parse_pem(
            pem, f"the client certificate {self.files.cert}", ClientSetupError
        )
        client_id = str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        return credential.sign_capture(
            _read_key(self.files.key), client_id, image, credential.Liveness(liveness)
        )
