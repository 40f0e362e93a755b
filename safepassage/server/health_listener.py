"""The probe listener: grpc.health.v1 Check on a port of its own, for callers without a certificate.

The main port asks every caller for a client certificate at the TLS handshake, so a load balancer
or a Kubernetes grpc probe (which speaks plaintext and presents nothing) cannot reach its health
service. This listener is a second gRPC server in the same process, off unless
``listen.health_port`` is set, that serves one method: Health/Check, answered by the main server's
own HealthServicer, so it says NOT_SERVING as soon as a graceful shutdown begins and stays up until
the main server has stopped. Nothing else is registered on it: every other service, server
reflection included, is UNIMPLEMENTED there, and no call reaches the access interceptor, the store
or the matcher. The isolation is structural (a server with one servicer), not an access check.

Watch and List are not served (gRPC answers UNIMPLEMENTED: only Check is registered): Watch holds a
worker thread for as long as its caller likes, so unauthenticated watchers could starve the Check a
probe depends on and get the pod restarted.
The listener has a few threads and a small message limit of its own, and refuses calls past
``_MAX_CONCURRENT`` at once rather than queueing them.

Plaintext by default (Kubernetes' probe speaks nothing else; the answer is one status, no data);
``listen.health_tls`` serves it over TLS with the server's certificate, asking no client
certificate (grpc_health_probe -tls, cloud load balancers' TLS health checks).
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2

from safepassage.core.errors import FailedPrecondition
from safepassage.core.private_files import read_private
from safepassage.server.config import Config
from safepassage.server.pki_folder import PkiNotInitialised, PkiPaths
from safepassage.server.port_holder import PortInUse, port_holders

__all__ = ["HealthListener", "open_health_listener"]

log = logging.getLogger(__name__)
_WORKERS = 2
_MAX_CONCURRENT = 32
_MAX_MESSAGE_BYTES = 4096  # a HealthCheckRequest is a service name


def _check_only(
    statuses: health.HealthServicer,
) -> grpc.GenericRpcHandler[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """grpc.health.v1.Health with its Check method alone, answered by the main server's servicer."""
    check = grpc.unary_unary_rpc_method_handler(
        statuses.Check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, {"Check": check})


@dataclass
class HealthListener:
    """The probe server, bound (not started) by `open_health_listener`."""

    server: grpc.Server
    port: int
    address: str
    tls: bool

    def start(self) -> None:
        self.server.start()
        log.info(
            "health probes on port %d (%s, grpc.health.v1 Check only, no client certificate)",
            self.port,
            "TLS" if self.tls else "plaintext",
        )

    def stop(self) -> None:
        # Called once the main server has stopped: nothing is left to report on.
        self.server.stop(None).wait()


def open_health_listener(config: Config, statuses: health.HealthServicer) -> HealthListener | None:
    """The probe listener `config.listen` asks for, bound; None when health_port is not set."""
    listen = config.listen
    if listen.health_port is None:
        return None
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="health-probe"),
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=_MAX_CONCURRENT,
    )
    server.add_generic_rpc_handlers((_check_only(statuses),))
    address = f"{listen.health_host}:{listen.health_port}"
    try:
        if listen.health_tls:
            port = server.add_secure_port(address, _server_only_credentials(config))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # gRPC says only "Failed to bind"
        port = 0
    if port == 0:
        server.stop(None)
        holders = port_holders(listen.health_port) if listen.health_port else []
        named = f" by process (pid {', '.join(map(str, holders))})" if holders else ""
        raise PortInUse(f"cannot listen for health probes on {address}: in use{named} or not available here")
    return HealthListener(server, port, address, listen.health_tls)


def _server_only_credentials(config: Config) -> grpc.ServerCredentials:
    """The server's own certificate; no client certificate is asked for."""
    if not config.tls.enabled:
        raise FailedPrecondition("listen.health_tls needs tls.enabled: there is no server certificate")
    paths = PkiPaths(config.pki_dir)
    try:
        cert = paths.server_cert.read_bytes()
        key = read_private(paths.server_key, "server TLS key", error=PkiNotInitialised)
    except OSError as error:
        raise PkiNotInitialised(
            f"listen.health_tls: cannot read the server's TLS files in {config.pki_dir}"
            f" ({error.strerror}: {error.filename})"
        ) from None
    return grpc.ssl_server_credentials([(key, cert)], require_client_auth=False)
