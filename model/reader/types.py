"""Values the reader passes on: plain frozen dataclasses, picklable, so a reading made in a
worker process crosses the pipe to the server as it is."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# (x0, y0, x1, y1), each a fraction of the image's width or height (0..1), so a box can be
# drawn over the image at whatever size a client shows it, and means the same before and
# after the server's own resizing.
Box = tuple[float, float, float, float]


class EntityType(enum.Enum):
    """Kinds of personal data the recognizers find. Names match the proto's EntityType minus
    the `ENTITY_` prefix: the mapping is by name."""

    PHONE = "PHONE"
    EMAIL = "EMAIL"
    POSTAL_CODE = "POSTAL_CODE"
    ADDRESS = "ADDRESS"
    MESSENGER_ID = "MESSENGER_ID"


@dataclass(frozen=True)
class TextLine:
    """One line the OCR read: its text, the recogniser's confidence (0..1) and where it is."""

    text: str
    score: float
    box: Box


@dataclass(frozen=True)
class Finding:
    """One piece of personal data found in the text.

    `masked` is the only form of the text that may leave the reader (API answers, the audit
    store); logs and metrics get the entity type alone. `line` indexes the TextLine it came
    from; `box` is that line's box (a finding spanning two lines gets their union)."""

    entity: EntityType
    confidence: float
    box: Box
    masked: str
    line: int
    # Why it was accepted, e.g. ("phone_parser", "cue:tel"): shown to operators, no personal text.
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class CueWord:
    """A word that announces personal data (住所, TEL, Ship to, LINE ID ...), by category."""

    category: str
    line: int
    box: Box


class ReadingStatus(enum.Enum):
    """Whether the reader ran on an image. Names match the proto's ReadingStatus minus the
    `READING_` prefix. BUDGET_EXCEEDED and FAILED mean some text may be unread: the decision
    policy turns a PASS into REVIEW for them."""

    DISABLED = "DISABLED"
    SKIPPED = "SKIPPED"  # the gate saw no text
    READ = "READ"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    FAILED = "FAILED"

    @property
    def incomplete(self) -> bool:
        return self in (ReadingStatus.BUDGET_EXCEEDED, ReadingStatus.FAILED)


@dataclass(frozen=True)
class ReadingResult:
    """What leaves the worker about one image's text: findings (masked), cue categories, counts
    and the fusion's inputs. The text itself never does."""

    status: ReadingStatus
    gate_score: float = 0.0
    findings: tuple[Finding, ...] = ()
    cue_categories: tuple[str, ...] = ()
    lines: int = 0
    cpu_ms: float = 0.0
    # The CNN's own personal_info probability, before fusion replaced it in the scores.
    cnn_personal_info: float = 0.0
    fused: bool = False
    # The served personal_info score: the fusion's, or the CNN's when the version has none.
    fused_personal_info: float = 0.0
    features: tuple[float, ...] = field(default=(), compare=False)


def reading_record(reading: ReadingResult) -> dict:
    """The JSON form kept with an audit record and shown to operators: masked values, boxes,
    evidence and counts; no text that was read."""
    return {
        "status": reading.status.value,
        "gate_score": round(reading.gate_score, 5),
        "lines": reading.lines,
        "cues": list(reading.cue_categories),
        "cnn_personal_info": round(reading.cnn_personal_info, 5),
        "fused": reading.fused,
        "findings": [
            {
                "entity": f.entity.value,
                "confidence": round(f.confidence, 4),
                "box": [round(v, 4) for v in f.box],
                "masked": f.masked,
                "evidence": list(f.evidence),
            }
            for f in reading.findings
        ],
    }
