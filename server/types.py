"""The core's request and result types: plain dataclasses, no protobuf, no gRPC."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from model.reader.types import ReadingResult
from server.errors import ImageError


class Decision(enum.IntEnum):
    # Ordered so that max() is "the worst".
    PASS = 1
    REVIEW = 2
    BLOCK = 3


@dataclass(frozen=True)
class ImageInput:
    id: str
    url: str = ""
    content: bytes | None = None


@dataclass(frozen=True)
class ClassifyCall:
    post_id: str
    images: tuple[ImageInput, ...]
    request_id: str = ""


@dataclass
class ImageOutcome:
    id: str
    error: ImageError | None = None
    scores: dict[str, float] = field(default_factory=dict)
    top_class: str = ""
    decision: Decision = Decision.REVIEW
    audit_sampled: bool = False
    content_sha256: str = ""
    url: str = ""
    audit_reason: str = ""  # why it goes to human review (an AuditReason value); "": it does not
    reading: ReadingResult | None = None
    reasons: tuple[str, ...] = ()


@dataclass
class ClassifyResult:
    results: list[ImageOutcome]
    post_decision: Decision
    model_name: str
    model_version: str
    request_id: str
