"""The review app's client of the Audit API: every read and write of review state goes through
the running service (leases, verdicts, undo, progress), never to the database, so there is one
copy of the store logic and its guarantees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import audit_pb2_grpc as apb_grpc
from server.api.client import channel_options
from server.config import ReviewConfig

CALL_TIMEOUT_S = 15.0


class ServiceError(Exception):
    """A failed Audit call: `status` is the HTTP status the page gets."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_HTTP_FOR = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def timestamp(epoch: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(epoch * 1e9))
    return stamp


def open_aio_channel(cfg: ReviewConfig) -> grpc.aio.Channel:
    options = channel_options()
    if not (cfg.target_ca or cfg.target_cert):
        return grpc.aio.insecure_channel(cfg.target, options=options)
    roots = None if cfg.target_ca in ("", "system") else Path(cfg.target_ca).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=Path(cfg.target_key).read_bytes() if cfg.target_key else None,
        certificate_chain=Path(cfg.target_cert).read_bytes() if cfg.target_cert else None,
    )
    return grpc.aio.secure_channel(cfg.target, credentials, options=options)


class AuditClient:
    def __init__(self, cfg: ReviewConfig):
        self._channel = open_aio_channel(cfg)
        self._stub = apb_grpc.AuditStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = ()
        if cfg.target_token_file:
            token = Path(cfg.target_token_file).read_text().splitlines()[0].strip()
            self._metadata = (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        # grace=None (cancel what is in flight) spelled out: grpc-stubs declares no default.
        await self._channel.close(grace=None)

    async def _call(self, method, request):
        try:
            return await method(request, timeout=CALL_TIMEOUT_S, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                message = "the moderation service refused the review tool's token (review.target_token_file)"
            else:
                message = f"moderation service: {code.name}: {exc.details()}"
            raise ServiceError(_HTTP_FOR.get(code, 502), message) from None

    async def next_for_review(
        self, reviewer: str, limit: int, lease_s: float, flt: apb.ReviewFilter
    ) -> list[apb.AuditItem]:
        response = await self._call(
            self._stub.NextForReview,
            apb.NextForReviewRequest(reviewer_id=reviewer, limit=limit, lease_seconds=round(lease_s), filter=flt),
        )
        return list(response.items)

    async def release(self, reviewer: str, record_ids: Sequence[str]) -> int:
        if not record_ids:
            return 0
        response = await self._call(
            self._stub.ReleaseReview, apb.ReleaseReviewRequest(reviewer_id=reviewer, record_ids=list(record_ids))
        )
        return response.released

    async def submit(self, operator: str, labels: Sequence[tuple[str, str]]) -> list[apb.VerdictResult]:
        response = await self._call(
            self._stub.SubmitVerdicts,
            apb.SubmitVerdictsRequest(
                operator_id=operator, verdicts=[apb.Verdict(record_id=r, label=label) for r, label in labels]
            ),
        )
        return list(response.results)

    async def post(self, post_id: str) -> list[apb.AuditItem]:
        response = await self._call(self._stub.GetPost, apb.GetPostRequest(post_id=post_id))
        return list(response.items)

    async def stats(self, operator: str, since: float | None, flt: apb.ReviewFilter) -> apb.ReviewStatsResponse:
        request = apb.ReviewStatsRequest(operator_id=operator, filter=flt)
        if since is not None:
            request.since.CopyFrom(timestamp(since))
        return await self._call(self._stub.ReviewStats, request)

    async def retract(self, operator: str, record_ids: Sequence[str], lease_s: float) -> list[str]:
        response = await self._call(
            self._stub.RetractVerdicts,
            apb.RetractVerdictsRequest(operator_id=operator, record_ids=list(record_ids), lease_seconds=round(lease_s)),
        )
        return list(response.record_ids)
