"""A gRPC channel to a SafePassage server, over TLS by default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from safepassage_api.v1 import matching_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_CA = Path("var/safepassage/tls/ca.pem")
MESSAGE_LIMIT = 16 * 1024 * 1024


class ClientSetupError(Exception):
    """The client cannot be set up (no CA file, say)."""


def open_channel(address: str, ca_file: Path | None, plaintext: bool = False) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", MESSAGE_LIMIT),
    ]
    if plaintext:
        return grpc.insecure_channel(address, options=options)
    ca_path = ca_file or DEFAULT_CA
    try:
        root = ca_path.read_bytes()
    except OSError:
        raise ClientSetupError(
            f"cannot read the CA certificate {ca_path}; pass --ca (the server writes its"
            " development CA to <data_dir>/tls/ca.pem on first run)"
        ) from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)


@dataclass
class Stubs:
    channel: grpc.Channel
    galleries: pb_grpc.GalleryServiceStub
    matching: pb_grpc.MatchingServiceStub

    @classmethod
    def connect(cls, channel: grpc.Channel) -> Stubs:
        return cls(channel, pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel))
