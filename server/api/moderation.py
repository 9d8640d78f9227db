"""The gRPC adapter of the Moderation service: proto <-> core types. Tokens, status codes and call
metrics are the interceptors' (server/api/interceptors.py)."""

from __future__ import annotations

import grpc

from model.reader.types import ReadingResult
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.pipeline.core import ModerationCore
from server.types import ClassifyCall, ClassifyResult, ImageInput


def call_from_proto(request: pb.ClassifyRequest) -> ClassifyCall:
    images = tuple(
        ImageInput(id=img.id, url=img.url, content=img.content if img.WhichOneof("source") == "content" else None)
        for img in request.images
    )
    return ClassifyCall(post_id=request.post_id, images=images, request_id=request.request_id)


def result_to_proto(result: ClassifyResult) -> pb.ClassifyResponse:
    response = pb.ClassifyResponse(
        # Enum values by name: the core's and the proto's enums share names, not a Python type.
        post_decision="DECISION_" + result.post_decision.name,
        model_name=result.model_name,
        model_version=result.model_version,
        request_id=result.request_id,
    )
    for outcome in result.results:
        item = response.results.add(
            id=outcome.id,
            top_class=outcome.top_class,
            decision="DECISION_" + outcome.decision.name,
            audit_sampled=outcome.audit_sampled,
            content_sha256=outcome.content_sha256,
        )
        if outcome.error is None:
            item.status.code = pb.IMAGE_OK
        else:
            item.status.CopyFrom(
                pb.ImageStatus(
                    code="IMAGE_" + outcome.error.code.value,
                    message=outcome.error.message,
                    http_status=outcome.error.http_status,
                )
            )
        item.scores.update(outcome.scores)
        item.reasons.extend(outcome.reasons)
        if outcome.reading is not None:
            reading_to_proto(outcome.reading, item.reading)
    return response


def reading_to_proto(reading: ReadingResult, out: pb.Reading) -> None:
    out.status = "READING_" + reading.status.value  # type: ignore[assignment]
    out.gate_score = reading.gate_score
    out.lines = reading.lines
    out.cues.extend(reading.cue_categories)
    out.cnn_personal_info = reading.cnn_personal_info
    out.fused = reading.fused
    for finding in reading.findings:
        x0, y0, x1, y1 = finding.box
        out.findings.add(
            entity="ENTITY_" + finding.entity.value,
            confidence=finding.confidence,
            box=pb.Box(x0=x0, y0=y0, x1=x1, y1=y1),
            masked=finding.masked,
            evidence=finding.evidence,
        )


class ModerationServicer(pb_grpc.ModerationServicer):
    def __init__(self, core: ModerationCore):
        self._core = core

    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        result = await self._core.classify(call_from_proto(request), context.time_remaining())
        return result_to_proto(result)
