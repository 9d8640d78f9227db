"""The audit loop's operations for reviewers, knowing nothing of gRPC: hand out records to
review under a lease, take verdicts back. server/api/audit.py adapts it to the Audit RPCs."""

from __future__ import annotations

from collections.abc import Sequence

from server.audit.records import AuditReason, ReviewFilter, ReviewStats, StoredRecord, Verdict, VerdictResult
from server.audit.sql_store import SQLAuditStore
from server.audit.verdicts import MAX_FIELD, check_verdicts
from server.config import AuditConfig
from server.errors import InvalidRequest
from server.metrics import Metrics
from server.types import Decision

DEFAULT_REVIEW_ITEMS = 20
# Post ids or skipped record ids one review filter may name.
MAX_FILTER_IDS = 1000


class ReviewService:
    """What reviewers do with the audit store: lease records to judge, submit and retract
    verdicts, release leases; with the metrics each of these moves."""

    def __init__(self, store: SQLAuditStore, config: AuditConfig, metrics: Metrics):
        self.store = store
        self.config = config
        self.metrics = metrics

    def submit_verdicts(self, verdicts: Sequence[Verdict], overwrite: bool = False) -> list[VerdictResult]:
        check_verdicts(verdicts, self.config.max_verdicts_per_call)
        results = self.store.submit_verdicts(verdicts, overwrite=overwrite)
        for result in results:
            self.metrics.audit_verdicts.labels(result.outcome.value).inc()
        return results

    def next_for_review(
        self, reviewer: str, limit: int = 0, lease_s: float = 0, flt: ReviewFilter | None = None
    ) -> list[StoredRecord]:
        _check_reviewer(reviewer)
        limit = limit or min(DEFAULT_REVIEW_ITEMS, self.config.review_max_items)
        if limit > self.config.review_max_items:
            raise InvalidRequest(f"limit {limit} is over the server's {self.config.review_max_items}")
        lease_s = lease_s or self.config.review_lease_s
        if lease_s > self.config.review_max_lease_s:
            raise InvalidRequest(f"lease of {lease_s:g}s is over the server's {self.config.review_max_lease_s:g}s")
        flt = flt or ReviewFilter()
        _check_filter(flt)
        return self.store.next_for_review(reviewer, limit, lease_s, flt)

    def release(self, reviewer: str, record_ids: Sequence[str]) -> int:
        _check_reviewer(reviewer)
        if len(record_ids) > self.config.review_max_items:
            raise InvalidRequest(f"{len(record_ids)} records, limit {self.config.review_max_items}")
        return self.store.release(reviewer, list(record_ids))

    def post(self, post_id: str) -> list[StoredRecord]:
        if not post_id:
            raise InvalidRequest("post id is required")
        if len(post_id) > MAX_FIELD:
            raise InvalidRequest(f"post id is {len(post_id)} characters, limit {MAX_FIELD}")
        return self.store.post_records(post_id, self.config.review_max_items)

    def stats(self, operator: str, since: float | None, flt: ReviewFilter | None = None) -> ReviewStats:
        if len(operator) > MAX_FIELD:
            raise InvalidRequest(f"operator id is {len(operator)} characters, limit {MAX_FIELD}")
        flt = flt or ReviewFilter()
        _check_filter(flt)
        return self.store.review_stats(operator, since, flt)

    def retract(self, operator: str, record_ids: Sequence[str], lease_s: float = 0) -> list[str]:
        if not operator:
            raise InvalidRequest("operator id is required")
        if len(operator) > MAX_FIELD:
            raise InvalidRequest(f"operator id is {len(operator)} characters, limit {MAX_FIELD}")
        if len(record_ids) > self.config.review_max_items:
            raise InvalidRequest(f"{len(record_ids)} records, limit {self.config.review_max_items}")
        lease_s = lease_s or self.config.review_lease_s
        if lease_s > self.config.review_max_lease_s:
            raise InvalidRequest(f"lease of {lease_s:g}s is over the server's {self.config.review_max_lease_s:g}s")
        return self.store.retract_verdicts(operator, list(record_ids), lease_s)


def _check_filter(flt: ReviewFilter) -> None:
    known = {r.value for r in AuditReason}
    if set(flt.reasons) - known:
        raise InvalidRequest(f"unknown reasons {sorted(set(flt.reasons) - known)}; use {sorted(known)}")
    decisions = {d.name for d in Decision}
    if set(flt.decisions) - decisions:
        raise InvalidRequest(f"unknown decisions {sorted(set(flt.decisions) - decisions)}; use {sorted(decisions)}")
    for name in ("post_ids", "exclude_record_ids"):
        values = getattr(flt, name)
        if len(values) > MAX_FILTER_IDS:
            raise InvalidRequest(f"filter.{name}: {len(values)} ids, limit {MAX_FILTER_IDS}")
        if any(len(v) > MAX_FIELD for v in values):
            raise InvalidRequest(f"filter.{name}: an id is over {MAX_FIELD} characters")


def _check_reviewer(reviewer: str) -> None:
    if not reviewer:
        raise InvalidRequest("reviewer id is required")
    if len(reviewer) > MAX_FIELD:
        raise InvalidRequest(f"reviewer id is {len(reviewer)} characters, limit {MAX_FIELD}")
