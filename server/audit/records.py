"""What one audit row holds, and what an operator's verdict on it says."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


class AuditReason(enum.Enum):
    FLAGGED = "flagged"  # REVIEW or BLOCK by threshold: always recorded
    SAMPLED = "sampled"  # a confident PASS picked by the deterministic sampler
    LOW_CONFIDENCE = "low_confidence"  # a PASS whose top score fell in the low-confidence band: made REVIEW


@dataclass(frozen=True)
class AuditRecord:
    request_id: str
    post_id: str
    image_id: str
    url: str
    content_sha256: str
    scores: dict[str, float]
    top_class: str
    decision: str
    reason: AuditReason
    model_name: str
    model_version: str
    created_at: float
    # Idempotency key: a replayed or retried write of the same record never makes a second row.
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # 1 / the probability that an image like this one was recorded (1 for flagged ones), so the
    # drift monitor can rebuild the score distribution of all traffic from the recorded share.
    sample_weight: float = 1.0
    # What the text reader found: model.reader.types.reading_record() (masked values and boxes,
    # never the text read); empty when the server had no reader.
    reading: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRecord:
    """A row as read back from the store: the record plus its review state."""

    record_id: str
    created_at: float
    request_id: str
    post_id: str
    image_id: str
    url: str
    content_sha256: str
    scores: dict[str, float]
    top_class: str
    decision: str
    reason: str
    model_name: str
    model_version: str
    sample_weight: float = 1.0
    # AuditRecord.reading as stored: {} for records made without a reader (or before migration 3).
    reading: dict = field(default_factory=dict)
    verdict_label: str | None = None
    verdict_operator: str | None = None
    verdict_at: float | None = None
    verdict_note: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    """An operator's judgement of one recorded image. The record is named by its record_id, or
    by the (request_id, image_id) pair the caller of Classify already knows."""

    label: str
    operator: str
    record_id: str = ""
    request_id: str = ""
    image_id: str = ""
    judged_at: float | None = None  # None: the time the store receives it
    note: str = ""

    @property
    def target(self) -> str:
        return self.record_id or f"{self.request_id}/{self.image_id}"


class VerdictOutcome(enum.Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # the record already carries this label: a retry, nothing written
    NOT_FOUND = "not_found"  # no such record (yet: it may still be in a writer's queue)
    CONFLICT = "conflict"  # the record carries another label; resubmit with overwrite to correct it


@dataclass(frozen=True)
class VerdictResult:
    target: str
    record_id: str
    outcome: VerdictOutcome
    message: str = ""


@dataclass(frozen=True)
class ReviewFilter:
    """Empty tuples match everything."""

    reasons: tuple[str, ...] = ()
    top_classes: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    model_name: str = ""
    model_versions: tuple[str, ...] = ()
    post_ids: tuple[str, ...] = ()
    exclude_record_ids: tuple[str, ...] = ()
    created_after: float | None = None  # inclusive
    created_before: float | None = None  # exclusive


@dataclass(frozen=True)
class ReviewStats:
    judged_by_operator: int  # verdicts by one operator since a moment
    judged: int  # verdicts by everyone since that moment
    pending: int  # records matching a filter still waiting for a verdict
