"""Which classified images go to human review, and why: the audit half of the policy.

- REVIEW and BLOCK decisions are always recorded (FLAGGED).
- A PASS whose top score lies in the configured low-confidence band is made REVIEW and
  recorded (LOW_CONFIDENCE): the model could not tell, so a person should.
- Of the other PASSes, a deterministic share keyed by the content hash is recorded and flagged
  `audit_sampled` (SAMPLED); the share can differ by the class of the top score."""

from __future__ import annotations

from dataclasses import dataclass

from server.audit.records import AuditReason
from server.config import AuditConfig
from server.pipeline.sampling import is_sampled
from server.types import Decision


def parse_rates(text: str) -> dict[str, float]:
    """'ham=0.01,personal_info=0.05' -> {'ham': 0.01, 'personal_info': 0.05}."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"sample rate {item!r} is not of the form class=0.05")
        rate = float(value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate {item!r}: {rate} is not within [0, 1]")
        rates[name.strip()] = rate
    return rates


@dataclass(frozen=True)
class AuditChoice:
    decision: Decision
    reason: AuditReason | None  # None: not recorded
    sampled: bool


class AuditPolicy:
    def __init__(self, config: AuditConfig):
        if not 0.0 <= config.sample_rate <= 1.0:
            raise ValueError(f"audit sample_rate {config.sample_rate} is not within [0, 1]")
        self.default_rate = config.sample_rate
        self.class_rates = parse_rates(config.class_sample_rates)
        self.salt = config.sample_salt
        self.band = (config.low_confidence_min, config.low_confidence_max)

    def rate_for(self, top_class: str) -> float:
        return self.class_rates.get(top_class, self.default_rate)

    def choose(self, decision: Decision, scores: dict[str, float], top_class: str, content_sha256: str) -> AuditChoice:
        if decision != Decision.PASS:
            return AuditChoice(decision, AuditReason.FLAGGED, False)
        low, high = self.band
        if low < high and low <= scores.get(top_class, 1.0) < high:
            return AuditChoice(Decision.REVIEW, AuditReason.LOW_CONFIDENCE, False)
        if is_sampled(content_sha256, self.rate_for(top_class), self.salt):
            return AuditChoice(decision, AuditReason.SAMPLED, True)
        return AuditChoice(decision, None, False)

    def sample_weight(self, reason: AuditReason, top_class: str) -> float:
        """1 / the probability that an image with this outcome was recorded."""
        if reason != AuditReason.SAMPLED:
            return 1.0
        rate = self.rate_for(top_class)
        return 1.0 / rate if rate > 0 else 1.0
