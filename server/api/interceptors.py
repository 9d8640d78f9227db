"""Server interceptors for the unary-unary methods of our APIs, one concern each. The servicers
raise the core's typed exceptions and know nothing of tokens, status codes or metrics.

Order them outermost first, as grpc.aio.server(interceptors=...) applies them:
CallMetricsInterceptor, StatusMappingInterceptor, then AuthInterceptor, so a refused token is
mapped to UNAUTHENTICATED and counted like any other call."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.api.security import token_accepted
from server.errors import (
    AuditStoreUnavailable,
    DeadlineExceeded,
    InvalidRequest,
    ModelUnavailable,
    ModerationError,
    NotFound,
    Overloaded,
    Unauthenticated,
)
from server.metrics import Metrics

log = logging.getLogger(__name__)

# Our own API and the TensorFlow Serving API; health and reflection are left alone.
SERVED_PREFIXES = ("/moderation.v1.", "/tensorflow.serving.")

STATUS_FOR: dict[type[ModerationError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    AuditStoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

# A method's behaviour: (request, context) -> awaitable response. grpc-stubs types the handlers
# grpc.aio hands over as the sync server's, so context and result are left open here.
Behaviour = Callable[[Any, Any], Any]


def status_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in STATUS_FOR.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class _UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of each unary-unary method under SERVED_PREFIXES with `wrap`."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def wrap(self, behaviour: Behaviour, method: str) -> Behaviour:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(SERVED_PREFIXES):
            return handler
        # This runs on every call, and the handler below is the same object for every call of
        # a method: wrap it once, not three closures and handlers per call on the hot path.
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            self.wrap(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class CallMetricsInterceptor(_UnaryInterceptor):
    """Counts calls by method and final status code, and observes their latency."""

    def __init__(self, metrics: Metrics):
        super().__init__()
        self._metrics = metrics

    def wrap(self, behaviour: Behaviour, method: str) -> Behaviour:
        metrics = self._metrics

        async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                # The code the call was aborted with (StatusMappingInterceptor's, or the servicer's).
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                metrics.calls.labels(method, code.name).inc()
                metrics.call_seconds.observe(time.perf_counter() - started)

        return measured


class StatusMappingInterceptor(_UnaryInterceptor):
    """The one place where the core's typed exceptions become status codes; anything else is
    logged and answered INTERNAL, naming only the exception's type."""

    def wrap(self, behaviour: Behaviour, method: str) -> Behaviour:
        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behaviour(request, context)
            except ModerationError as exc:
                await context.abort(status_for(exc), str(exc))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                log.exception("unexpected error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

        return mapped


class AuthInterceptor(_UnaryInterceptor):
    """Refuses calls without one of the accepted bearer tokens (server/api/security.py)."""

    def __init__(self, tokens: frozenset[bytes]):
        super().__init__()
        self._tokens = tokens

    def wrap(self, behaviour: Behaviour, method: str) -> Behaviour:
        tokens = self._tokens

        async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not token_accepted(context.invocation_metadata(), tokens):
                raise Unauthenticated("missing or unknown bearer token (metadata `authorization: Bearer ...`)")
            return await behaviour(request, context)

        return authenticated


def server_interceptors(metrics: Metrics, tokens: frozenset[bytes] | None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of the API port, outermost first; no AuthInterceptor without tokens."""
    chain: list[grpc.aio.ServerInterceptor] = [CallMetricsInterceptor(metrics), StatusMappingInterceptor()]
    if tokens is not None:
        chain.append(AuthInterceptor(tokens))
    return chain
