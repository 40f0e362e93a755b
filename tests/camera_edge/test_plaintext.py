"""An edge device talks plaintext only to a server on its own machine (issue #15, finding 10).

`plaintext = true` was accepted with any address: a camera configured that way sent its
embeddings, unencrypted and unauthenticated, across the network to whoever answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from safepassage.camera_edge.config import load_edge_config
from safepassage.camera_edge.connection import open_channel
from safepassage.camera_edge.errors import EdgeConfigError

PLAINTEXT = """camera_id = "bench-cam"
[source]
location = "clips/door.mp4"
[server]
address = "{address}"
gallery_id = "watchlist"
plaintext = true
"""

REMOTE = [
    "matching.border.example:50051",
    "10.0.0.5:50051",
    "0.0.0.0:50051",
    "[2001:db8::1]:50051",
    "localhost.attacker.example:50051",
    "dns://8.8.8.8/localhost:50051",
    "unix:/run/safepassage.sock",
]
LOOPBACK = ["localhost:50051", "127.0.0.1:50051", "127.0.0.2:9", "[::1]:50051", "dns:///localhost:50051"]


def write(tmp_path: Path, address: str) -> Path:
    path = tmp_path / "camera.toml"
    path.write_text(PLAINTEXT.format(address=address))
    return path


@pytest.mark.parametrize("address", REMOTE)
def test_plaintext_to_another_machine_is_refused_when_the_configuration_loads(
    tmp_path: Path, address: str
) -> None:
    with pytest.raises(EdgeConfigError) as refused:
        load_edge_config(write(tmp_path, address))
    message = str(refused.value)
    assert "plaintext" in message and "loopback" in message and "ca, cert and key" in message


@pytest.mark.parametrize("address", REMOTE)
def test_a_plaintext_channel_to_another_machine_is_never_opened(address: str) -> None:
    """The kiosk command and any program calling open_channel directly are held to the same rule."""
    with pytest.raises(EdgeConfigError, match="loopback"):
        open_channel(address, None)


@pytest.mark.parametrize("address", LOOPBACK)
def test_plaintext_to_this_machine_stays_allowed(tmp_path: Path, address: str) -> None:
    config = load_edge_config(write(tmp_path, address))
    assert config.server.plaintext and config.server.credentials() is None


@pytest.fixture
def plaintext_server() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(grace=None)


def test_a_plaintext_call_on_loopback_still_works(plaintext_server: int) -> None:
    with open_channel(f"127.0.0.1:{plaintext_server}", None) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
