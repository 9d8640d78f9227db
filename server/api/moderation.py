"""The gRPC adapter: proto <-> core types, and the one place where core exceptions become
status codes (ErrorMappingInterceptor)."""

from __future__ import annotations

import logging
import time

import grpc

from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
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
from server.pipeline.core import ModerationCore
from server.types import ClassifyCall, ClassifyResult, ImageInput

log = logging.getLogger(__name__)

STATUS_FOR: dict[type[ModerationError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    AuditStoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}


# Our own API and the TensorFlow Serving API; health and reflection are left alone.
SERVED_PREFIXES = ("/moderation.v1.", "/tensorflow.serving.")


def status_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in STATUS_FOR.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """For every unary-unary method of our APIs: checks the bearer token when tokens are
    configured, maps the core's typed exceptions to status codes and counts calls by code, so
    servicers stay free of try/except boilerplate."""

    def __init__(self, metrics: Metrics, tokens: frozenset[bytes] | None = None):
        self._metrics = metrics
        self._tokens = tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(SERVED_PREFIXES):
            return handler
        behaviour = handler.unary_unary
        metrics = self._metrics
        tokens = self._tokens

        async def wrapped(request, context: grpc.aio.ServicerContext):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if tokens is not None and not token_accepted(context.invocation_metadata(), tokens):
                    raise Unauthenticated("missing or unknown bearer token (metadata `authorization: Bearer ...`)")
                return await behaviour(request, context)
            except ModerationError as exc:
                code = status_for(exc)
                await context.abort(code, str(exc))
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", handler_call_details.method)
                await context.abort(code, f"internal error: {type(exc).__name__}")
            finally:
                metrics.calls.labels(method, code.name).inc()
                metrics.call_seconds.observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def call_from_proto(request: pb.ClassifyRequest) -> ClassifyCall:
    images = tuple(
        ImageInput(id=img.id, url=img.url, content=img.content if img.WhichOneof("source") == "content" else None)
        for img in request.images
    )
    return ClassifyCall(post_id=request.post_id, images=images, request_id=request.request_id)


def result_to_proto(result: ClassifyResult) -> pb.ClassifyResponse:
    response = pb.ClassifyResponse(
        post_decision=int(result.post_decision),
        model_name=result.model_name,
        model_version=result.model_version,
        request_id=result.request_id,
    )
    for outcome in result.results:
        item = response.results.add(
            id=outcome.id,
            top_class=outcome.top_class,
            decision=int(outcome.decision),
            audit_sampled=outcome.audit_sampled,
            content_sha256=outcome.content_sha256,
        )
        if outcome.error is None:
            item.status.code = pb.IMAGE_OK
        else:
            item.status.code = pb.ImageStatusCode.Value("IMAGE_" + outcome.error.code.value)
            item.status.message = outcome.error.message
            item.status.http_status = outcome.error.http_status
        item.scores.update(outcome.scores)
    return response


class ModerationServicer(pb_grpc.ModerationServicer):
    def __init__(self, core: ModerationCore):
        self._core = core

    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        result = await self._core.classify(call_from_proto(request), context.time_remaining())
        return result_to_proto(result)
