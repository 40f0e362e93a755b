"""The probe port: health checks without a client certificate, and nothing else (issue #17).

A load balancer or a Kubernetes grpc probe presents no certificate, so it cannot pass the main
port's mutual-TLS handshake. `listen.health_port` opens a second listener serving
grpc.health.v1 Check alone; these tests hold it to that: Check answers without a certificate and
says what the main server says (NOT_SERVING once a graceful shutdown starts), every other service
there is UNIMPLEMENTED, and the main port still refuses callers without a certificate.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.core.errors import FailedPrecondition
from safepassage.server.config import Config, ConfigError, load_config
from safepassage.server.health_listener import open_health_listener
from safepassage.server.pki_issuance import Pki
from safepassage.server.port_holder import PortInUse
from tests.pki_helpers import CHANNEL_OPTIONS, RolePki
from tests.process import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MATCHING = "safepassage.v1.MatchingService"
PROBE_LINE = re.compile(r"health probes on port (\d+)")
BOUND_S = 60.0  # generous: a condition that holds is met in well under a second


def check(port: int, service: str = "", credentials: grpc.ChannelCredentials | None = None) -> int:
    """Health/Check on localhost:port, plaintext (credentials None) or with `credentials`."""
    target = f"localhost:{port}"
    with (
        grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        if credentials is not None
        else grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
        return int(reply.status)


def refused(call: grpc.UnaryUnaryMultiCallable[Any, Any], request: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    error = raised.value
    assert isinstance(error, grpc.Call)
    code = error.code()
    assert isinstance(code, grpc.StatusCode)
    return code


def probe_port(server: ServerProcess) -> int:
    found = [m for line in server.log if (m := PROBE_LINE.search(line))]
    assert found, "no probe listener in the log:\n" + "".join(server.log[-30:])
    return int(found[0].group(1))


@pytest.mark.server
def test_the_probe_port_answers_check_without_a_certificate_and_serves_nothing_else(tmp_path: Path) -> None:
    # A long grace period: the shutdown below waits for the open Watch, so the window is ours.
    server = ServerProcess(tmp_path / "data", settings="[listen]\nhealth_port = 0\nshutdown_grace_s = 120\n")
    port = probe_port(server)
    assert port != server.port
    assert check(port) == SERVING and check(port, MATCHING) == SERVING
    with grpc.insecure_channel(f"localhost:{port}", options=CHANNEL_OPTIONS) as channel:
        unknown = health_pb2_grpc.HealthStub(channel).Check
        assert refused(unknown, health_pb2.HealthCheckRequest(service="no.such.Service")) == (
            grpc.StatusCode.NOT_FOUND
        )
        # Every other service, and the health service's other methods, are not there.
        matching = pb_grpc.MatchingServiceStub(channel)
        identify = pb.IdentifyRequest(gallery_id="g", probe=pb.Probe(embedding=pb.Embedding(values=[0.0])))
        assert refused(matching.Identify, identify) == grpc.StatusCode.UNIMPLEMENTED
        galleries = pb_grpc.GalleryServiceStub(channel)
        assert refused(galleries.ListGalleries, pb.ListGalleriesRequest()) == grpc.StatusCode.UNIMPLEMENTED
        listing = health_pb2_grpc.HealthStub(channel).List
        assert refused(listing, health_pb2.HealthListRequest()) == grpc.StatusCode.UNIMPLEMENTED
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as watched:
            next(watch)
        assert watched.value.code() is grpc.StatusCode.UNIMPLEMENTED
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        with pytest.raises(grpc.RpcError) as reflected:
            next(reflection)
        assert reflected.value.code() is grpc.StatusCode.UNIMPLEMENTED

    # The main port still refuses a caller without a certificate: plaintext, and TLS with none.
    with pytest.raises(grpc.RpcError) as plain:
        check(server.port)
    assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as anonymous:
        check(server.port, credentials=grpc.ssl_channel_credentials(server.ca_file.read_bytes()))
    assert anonymous.value.code() is grpc.StatusCode.UNAVAILABLE

    # Graceful shutdown: an open Watch on the main port holds the server in its grace period,
    # during which the probe says NOT_SERVING, as the main port's watchers are told.
    with server.channel() as admin:
        watch = health_pb2_grpc.HealthStub(admin).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == SERVING
        server.process.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        deadline = time.monotonic() + BOUND_S
        while (status := check(port)) != NOT_SERVING:
            assert status == SERVING and time.monotonic() < deadline, status
            time.sleep(0.05)
        assert server.process.poll() is None, "the server is still in its grace period"
        watch.cancel()
    assert server.stop() == 0
    with pytest.raises(grpc.RpcError) as gone:
        check(port)
    assert gone.value.code() is grpc.StatusCode.UNAVAILABLE


def test_the_tls_probe_asks_for_no_client_certificate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pki = Pki.init(data / "pki")
    config = load_config(
        None, {"storage.data_dir": str(data), "listen.health_port": 0, "listen.health_tls": True}
    )
    statuses = health.HealthServicer()
    statuses.set("", SERVING)
    listener = open_health_listener(config, statuses)
    assert listener is not None and listener.tls
    listener.start()
    try:
        trusting = grpc.ssl_channel_credentials(pki.ca_pem)
        assert check(listener.port, credentials=trusting) == SERVING
        statuses.enter_graceful_shutdown()
        assert check(listener.port, credentials=trusting) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as plain:  # TLS means TLS: no plaintext beside it
            check(listener.port)
        assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        listener.stop()


def test_the_probe_port_is_off_unless_asked_for_and_checked_when_it_is(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    default = load_config(None, {"storage.data_dir": data})
    assert default.listen.health_port is None
    assert open_health_listener(default, health.HealthServicer()) is None
    with pytest.raises(ConfigError, match="health_port must differ from port"):
        load_config(None, {"listen.port": 50051, "listen.health_port": 50051})
    plaintext = load_config(
        None,
        {
            "storage.data_dir": data,
            "tls.enabled": False,
            "tls.allow_plaintext_on_localhost": True,
            "listen.health_port": 0,
            "listen.health_tls": True,
        },
    )
    with pytest.raises(FailedPrecondition, match=r"listen\.health_tls needs tls\.enabled"):
        open_health_listener(plaintext, health.HealthServicer())
    with socket.socket() as taken:  # a port someone else holds: refused, naming the holder
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = load_config(None, {"storage.data_dir": data, "listen.health_port": port})
        with pytest.raises(
            PortInUse, match=rf"health probes on 127\.0\.0\.1:{port}: in use by process \(pid {os.getpid()}\)"
        ):
            open_health_listener(busy, health.HealthServicer())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _held_port() -> Iterator[int]:
    """A port another process holds (here, this test): bound and listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield int(taken.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as again:
        try:
            again.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_taken_port_refuses_the_start_and_leaves_nothing_held(
    tmp_path: Path, model_dir: Path, role_pki: RolePki
) -> None:
    from safepassage.app import create_server

    def config(port: int, health_port: int) -> Config:
        return load_config(
            None,
            {
                "storage.data_dir": str(tmp_path / "data"),
                "faces.model_dir": str(model_dir),
                "tls.pki_dir": str(role_pki.folder),
                "listen.port": port,
                "listen.health_port": health_port,
            },
        )

    main_port = _free_port()
    with _held_port() as probe:
        with pytest.raises(PortInUse, match=rf"health probes on 127\.0\.0\.1:{probe}: in use by process"):
            create_server(config(main_port, probe))
        assert _bindable(main_port), "the refused start left the main port bound"

    probe = _free_port()
    with _held_port() as main_port:  # the probe listener, bound before the main port, is let go
        with pytest.raises(PortInUse, match=rf"cannot listen on 127\.0\.0\.1:{main_port}"):
            create_server(config(main_port, probe))
        assert _bindable(probe), "the refused start left the probe port bound"

    # Nothing else was kept either (the data folder's lock, the stores): the same folder starts now.
    service, port = create_server(config(main_port, probe))
    service.start()
    try:
        assert port == main_port and check(probe) == SERVING
    finally:
        service.stop(grace_s=0)
