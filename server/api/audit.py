"""The gRPC adapter of the Audit service: proto <-> server/audit/review_service.py. Store calls block,
so they run in threads; typed exceptions reach StatusMappingInterceptor (server/api/interceptors.py)."""

from __future__ import annotations

import asyncio
from typing import cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import audit_pb2_grpc as apb_grpc
from moderation_api.v1 import moderation_pb2 as pb
from server.audit.records import AuditReason, ReviewFilter, StoredRecord, Verdict
from server.audit.review_service import ReviewService
from server.errors import InvalidRequest

SERVICE_NAME = apb.DESCRIPTOR.services_by_name["Audit"].full_name

_REASON_TO_PROTO = {
    AuditReason.FLAGGED.value: apb.AUDIT_REASON_FLAGGED,
    AuditReason.SAMPLED.value: apb.AUDIT_REASON_SAMPLED,
    AuditReason.LOW_CONFIDENCE.value: apb.AUDIT_REASON_LOW_CONFIDENCE,
}
_REASON_FROM_PROTO = {v: k for k, v in _REASON_TO_PROTO.items()}
# A stored reading names its status and entities as model/reader/types.py does, the proto's names
# less their prefix. A name this server does not know (written by a newer reader) is UNSPECIFIED.
_READING_STATUS = {name: cast(pb.ReadingStatus, number) for name, number in pb.ReadingStatus.items()}
_ENTITY = {name: cast(pb.EntityType, number) for name, number in pb.EntityType.items()}
_OUTCOME_TO_PROTO = {
    "applied": apb.VERDICT_APPLIED,
    "unchanged": apb.VERDICT_UNCHANGED,
    "not_found": apb.VERDICT_NOT_FOUND,
    "conflict": apb.VERDICT_CONFLICT,
}


def _timestamp(epoch: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(epoch * 1e9))
    return stamp


def verdicts_from_proto(request: apb.SubmitVerdictsRequest) -> list[Verdict]:
    return [
        Verdict(
            label=v.label,
            operator=v.operator_id or request.operator_id,
            record_id=v.record_id,
            request_id=v.request_id,
            image_id=v.image_id,
            judged_at=v.judged_at.ToNanoseconds() / 1e9 if v.HasField("judged_at") else None,
            note=v.note,
        )
        for v in request.verdicts
    ]


def filter_from_proto(flt: apb.ReviewFilter) -> ReviewFilter:
    try:
        reasons = tuple(_REASON_FROM_PROTO[r] for r in flt.reasons)
    except KeyError:
        raise InvalidRequest("filter.reasons: AUDIT_REASON_UNSPECIFIED is not a reason") from None
    if any(d == pb.DECISION_UNSPECIFIED for d in flt.decisions):
        raise InvalidRequest("filter.decisions: DECISION_UNSPECIFIED is not a decision")
    return ReviewFilter(
        reasons=reasons,
        top_classes=tuple(flt.top_classes),
        decisions=tuple(pb.Decision.Name(d).removeprefix("DECISION_") for d in flt.decisions),
        model_name=flt.model_name,
        model_versions=tuple(flt.model_versions),
        post_ids=tuple(flt.post_ids),
        exclude_record_ids=tuple(flt.exclude_record_ids),
        created_after=_epoch(flt, "created_after"),
        created_before=_epoch(flt, "created_before"),
    )


def _epoch(message, name: str) -> float | None:
    return getattr(message, name).ToNanoseconds() / 1e9 if message.HasField(name) else None


def reading_from_record(reading: dict, out: pb.Reading) -> None:
    """A stored reading (model.reader.types.reading_record()'s JSON form) -> moderation.v1.Reading:
    the same message Classify answers with (server/api/moderation.py reading_to_proto)."""
    out.status = _READING_STATUS.get("READING_" + str(reading.get("status", "")), pb.READING_STATUS_UNSPECIFIED)
    out.gate_score = float(reading.get("gate_score", 0.0))
    out.lines = int(reading.get("lines", 0))
    out.cues.extend(str(c) for c in reading.get("cues", ()))
    out.cnn_personal_info = float(reading.get("cnn_personal_info", 0.0))
    out.fused = bool(reading.get("fused", False))
    for finding in reading.get("findings", ()):
        box = [float(v) for v in finding.get("box", ())]
        x0, y0, x1, y1 = box if len(box) == 4 else (0.0, 0.0, 0.0, 0.0)
        out.findings.add(
            entity=_ENTITY.get("ENTITY_" + str(finding.get("entity", "")), pb.ENTITY_TYPE_UNSPECIFIED),
            confidence=float(finding.get("confidence", 0.0)),
            box=pb.Box(x0=x0, y0=y0, x1=x1, y1=y1),
            masked=str(finding.get("masked", "")),
            evidence=[str(e) for e in finding.get("evidence", ())],
        )


def item_to_proto(record: StoredRecord) -> apb.AuditItem:
    item = apb.AuditItem(
        record_id=record.record_id,
        created_at=_timestamp(record.created_at),
        request_id=record.request_id,
        post_id=record.post_id,
        image_id=record.image_id,
        url=record.url,
        content_sha256=record.content_sha256,
        top_class=record.top_class,
        decision="DECISION_" + record.decision,
        reason=_REASON_TO_PROTO.get(record.reason, apb.AUDIT_REASON_UNSPECIFIED),
        model_name=record.model_name,
        model_version=record.model_version,
    )
    item.scores.update(record.scores)
    if record.lease_expires_at is not None:
        item.lease_expires_at.CopyFrom(_timestamp(record.lease_expires_at))
        item.lease_owner = record.lease_owner or ""
    if record.verdict_at is not None:
        item.verdict_label = record.verdict_label or ""
        item.verdict_operator = record.verdict_operator or ""
        item.verdict_at.CopyFrom(_timestamp(record.verdict_at))
    if record.reading:
        reading_from_record(record.reading, item.reading)
    return item


class AuditServicer(apb_grpc.AuditServicer):
    def __init__(self, service: ReviewService):
        self._service = service

    async def SubmitVerdicts(
        self, request: apb.SubmitVerdictsRequest, context: grpc.aio.ServicerContext
    ) -> apb.SubmitVerdictsResponse:
        results = await asyncio.to_thread(
            self._service.submit_verdicts, verdicts_from_proto(request), request.overwrite
        )
        return apb.SubmitVerdictsResponse(
            results=[
                apb.VerdictResult(record_id=r.record_id, outcome=_OUTCOME_TO_PROTO[r.outcome.value], message=r.message)
                for r in results
            ]
        )

    async def NextForReview(
        self, request: apb.NextForReviewRequest, context: grpc.aio.ServicerContext
    ) -> apb.NextForReviewResponse:
        records = await asyncio.to_thread(
            self._service.next_for_review,
            request.reviewer_id,
            request.limit,
            float(request.lease_seconds),
            filter_from_proto(request.filter),
        )
        return apb.NextForReviewResponse(items=[item_to_proto(r) for r in records])

    async def ReleaseReview(
        self, request: apb.ReleaseReviewRequest, context: grpc.aio.ServicerContext
    ) -> apb.ReleaseReviewResponse:
        released = await asyncio.to_thread(self._service.release, request.reviewer_id, list(request.record_ids))
        return apb.ReleaseReviewResponse(released=released)

    async def GetPost(self, request: apb.GetPostRequest, context: grpc.aio.ServicerContext) -> apb.GetPostResponse:
        records = await asyncio.to_thread(self._service.post, request.post_id)
        return apb.GetPostResponse(items=[item_to_proto(r) for r in records])

    async def ReviewStats(
        self, request: apb.ReviewStatsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ReviewStatsResponse:
        stats = await asyncio.to_thread(
            self._service.stats, request.operator_id, _epoch(request, "since"), filter_from_proto(request.filter)
        )
        return apb.ReviewStatsResponse(
            judged_by_operator=stats.judged_by_operator, judged=stats.judged, pending=stats.pending
        )

    async def RetractVerdicts(
        self, request: apb.RetractVerdictsRequest, context: grpc.aio.ServicerContext
    ) -> apb.RetractVerdictsResponse:
        retracted = await asyncio.to_thread(
            self._service.retract, request.operator_id, list(request.record_ids), float(request.lease_seconds)
        )
        return apb.RetractVerdictsResponse(record_ids=retracted)
