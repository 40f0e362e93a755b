"""The one place where SafePassage errors become gRPC status codes.

Servicers raise domain errors; `ErrorMappingInterceptor` turns each into the
status of its category (see safepassage_core.errors) with the error's own
message. Anything else is a bug: it is logged with its traceback and the
caller gets INTERNAL with no details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from safepassage_core.errors import (
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
    log.exception("%s failed with an unexpected error", method)
    return grpc.StatusCode.INTERNAL, "internal error; the server log has details"


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

        def unary_response(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(request, context)
                except Exception as error:
                    if _aborted(error):
                        raise
                    context.abort(*describe(error, method))

            return wrapped

        def stream_response(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(request, context)
                except Exception as error:
                    if _aborted(error):
                        raise
                    context.abort(*describe(error, method))

            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            stream_response(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _aborted(error: Exception) -> bool:
    # context.abort raises a plain Exception after setting the status; let it through.
    return type(error) is Exception and not isinstance(error, SafePassageError)
