"""The gRPC server that carries the servicers: its worker pool, interceptors and limits, and its port.

Calls run on a pool of ``listen.max_workers`` threads, each with the matcher's search threads set;
past ``listen.max_concurrent_rpcs`` calls gRPC refuses at once rather than queue. The error mapping
interceptor is outermost, so errors the access checks raise are mapped too. The standard health
service answers for every servicer, and server reflection names them.

The port is bound without SO_REUSEPORT (gRPC's default would let a second server bind the same port
and take some of its calls), so a taken port refuses the start, naming the holder's pid where /proc
shows it (safepassage.server.port_holder).
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from safepassage.core.errors import FailedPrecondition
from safepassage.matcher import set_search_threads
from safepassage.server.access import AccessInterceptor
from safepassage.server.config import Config
from safepassage.server.errors import ErrorMappingInterceptor
from safepassage.server.port_holder import PortInUse, port_holders
from safepassage.server.service import SERVICE_NAMES

__all__ = ["add_health", "bind", "grpc_server", "release"]


def grpc_server(config: Config, access: AccessInterceptor) -> grpc.Server:
    """An unbound, unstarted server with the error mapping and `access` interceptors."""
    limit = config.listen.max_message_bytes
    return grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.listen.max_workers,
            thread_name_prefix="rpc",
            initializer=set_search_threads,
            initargs=(config.matching.search_threads,),
        ),
        # The error interceptor is outermost, so errors raised by the access checks are mapped too.
        interceptors=[ErrorMappingInterceptor(), access],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # gRPC's default lets a second server bind the same port and take some of its calls.
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=config.listen.max_concurrent_rpcs,
    )


def add_health(server: grpc.Server) -> health.HealthServicer:
    """The standard health service and server reflection; Service.start sets the statuses."""
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return servicer


def bind(server: grpc.Server, config: Config, credentials: grpc.ServerCredentials | None) -> int:
    """Bind the listen address (TLS unless `credentials` is None); the port bound, or PortInUse."""
    address = f"{config.listen.host}:{config.listen.port}"
    try:
        port = (
            server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        )
    except RuntimeError:  # gRPC says only "Failed to bind"
        port = 0
    if port == 0:
        raise _refusal(address, config.listen.port)
    return port


def release(server: grpc.Server) -> None:
    """Free the port of a server bound but never started: a start-up that failed after binding it."""
    # gRPC frees a port only when a server shuts down, and stopping a server that never started does
    # nothing: start it and stop it at once, cancelling whatever call reached it in between.
    server.start()
    server.stop(None).wait()


def _refusal(address: str, port: int) -> FailedPrecondition:
    holders = port_holders(port) if port else []
    if holders:
        named = ", ".join(str(pid) for pid in holders)
        return PortInUse(f"cannot listen on {address}: port {port} is in use by process (pid {named})")
    return PortInUse(f"cannot listen on {address}: the address is in use or not available here")
