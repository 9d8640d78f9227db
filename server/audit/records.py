"""What one audit row holds."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


class AuditReason(enum.Enum):
    FLAGGED = "flagged"  # REVIEW or BLOCK: always recorded
    SAMPLED = "sampled"  # a confident PASS picked by the deterministic sampler


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
