"""The one place where SafePassage errors become gRPC status codes.

Servicers raise domain errors; `ErrorMappingInterceptor` turns each into the
status of its category (see safepassage.core.errors) with the error's own
message. Anything else is a bug: it is logged with its traceback and the
caller gets INTERNAL with no details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from safepassage.core.errors import (
    AlreadyExists,
    DataIntegrityError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SafePassageError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from safepassage.store.errors import write_refused

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[SafePassageError], grpc.StatusCode], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataIntegrityError, grpc.StatusCode.DATA_LOSS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)


_DENIALS = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def status_of(error: SafePassageError) -> grpc.StatusCode:
    for category, code in _STATUS:
        if isinstance(error, category):
            return code
    return grpc.StatusCode.INTERNAL


def describe(error: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """Status and message for any exception raised while serving `method`."""
    if isinstance(error, SafePassageError):
        code = status_of(error)
        # Denials are security events: logged at warning (ids only, never request contents).
        level = logging.WARNING if code in _DENIALS else logging.INFO
        log.log(level, "%s -> %s (%s)", method, code.name, type(error).__name__)
        return code, str(error)
    if write_refused(error):  # a full or read-only data folder is a state to retry, not a bug
        log.error("%s: the data folder refused a write: %s", method, error)
        return grpc.StatusCode.UNAVAILABLE, "the server cannot write its data folder now; retry later"
    log.exception("%s failed with an unexpected error", method)
    return grpc.StatusCode.INTERNAL, "internal error; the server log has details"


class UndecodableRequest(InvalidInput):
    """The request bytes are not a valid protobuf message of the method's type."""


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request gRPC could not decode, so it reaches our mapping as INVALID_ARGUMENT."""

    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    # gRPC answers a deserializer's exception with INTERNAL before any handler runs;
    # bad bytes from a client are that client's error.
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:
            return _Undecodable(type(error).__name__)

    return decode


def _decoded(request: Any, method: str) -> Any:
    if isinstance(request, _Undecodable):
        raise UndecodableRequest(f"the request is not a valid message for {method} ({request.reason})")
    return request


class ErrorMappingInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        streaming_requests = handler.request_streaming

        def requests(incoming: Any) -> Any:
            if streaming_requests:
                return (_decoded(item, method) for item in incoming)
            return _decoded(incoming, method)

        def unary_response(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(requests(request), context)
                except Exception as error:
                    if _aborted(error):
                        raise
                    context.abort(*describe(error, method))

            return wrapped

        def stream_response(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(requests(request), context)
                except Exception as error:
                    if _aborted(error):
                        raise
                    if isinstance(error, grpc.RpcError) and not context.is_active():
                        # The client went away (cancelled, or its connection dropped): nothing to answer.
                        log.info("%s: the client ended the stream", method)
                        return
                    context.abort(*describe(error, method))

            return wrapped

        decode = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(handler.unary_unary), decode, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(handler.stream_unary), decode, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(handler.unary_stream), decode, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            stream_response(handler.stream_stream), decode, handler.response_serializer
        )


def _aborted(error: Exception) -> bool:
    # context.abort raises a plain Exception after setting the status; let it through.
    return type(error) is Exception and not isinstance(error, SafePassageError)
