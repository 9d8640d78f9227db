"""Scores -> decision, with per-class thresholds from the model version's metadata,
overridable in config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from model.reader.types import ReadingResult
from model.repository import ModelMetadata
from server.types import Decision


@dataclass(frozen=True)
class Thresholds:
    review: float
    block: float


def parse_overrides(text: str) -> dict[str, dict[str, float]]:
    """'sexual.review=0.4,sexual.block=0.9' -> {'sexual': {'review': 0.4, 'block': 0.9}}."""
    out: dict[str, dict[str, float]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        cls, dot, level = key.strip().rpartition(".")
        if not sep or not dot or level not in ("review", "block"):
            raise ValueError(f"threshold override {item!r} is not of the form class.review=0.5 or class.block=0.9")
        score = float(value)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"threshold override {item!r}: {score} is not within [0, 1]")
        out.setdefault(cls, {})[level] = score
    return out


class Policy:
    def __init__(
        self,
        class_names: list[str],
        benign_class: str,
        model_thresholds: dict[str, dict[str, float]],
        overrides: dict[str, dict[str, float]],
    ):
        unknown = set(overrides) - set(class_names)
        if unknown:
            raise ValueError(f"threshold overrides name classes the model does not have: {sorted(unknown)}")
        self.benign_class = benign_class
        self.thresholds: dict[str, Thresholds] = {}
        for cls in class_names:
            if cls == benign_class:
                continue
            merged = {**model_thresholds.get(cls, {"review": 0.5, "block": 1.01}), **overrides.get(cls, {})}
            if merged["block"] < merged["review"]:
                raise ValueError(f"class {cls}: block threshold {merged['block']} is below review {merged['review']}")
            self.thresholds[cls] = Thresholds(review=merged["review"], block=merged["block"])

    def decide(self, scores: dict[str, float], reading: ReadingResult | None = None) -> Decision:
        return self.explain(scores, reading)[0]

    def explain(
        self, scores: dict[str, float], reading: ReadingResult | None = None
    ) -> tuple[Decision, tuple[str, ...]]:
        """The decision and its reasons (the codes documented on ImageResult.reasons)."""
        decision = Decision.PASS
        reasons: list[str] = []
        for cls, t in self.thresholds.items():
            score = scores[cls]
            if score >= t.block:
                decision = Decision.BLOCK
                reasons.append(f"class:{cls}:block")
            elif score >= t.review:
                decision = max(decision, Decision.REVIEW)
                reasons.append(f"class:{cls}:review")
        if reading is not None:
            reasons.extend(f"entity:{e}" for e in sorted({f.entity.value for f in reading.findings}))
            if reading.status.incomplete:
                # Unread text may hold what the read part did not: a human looks, never PASS.
                decision = max(decision, Decision.REVIEW)
                reasons.append(f"reading:{reading.status.value.lower()}")
        return decision, tuple(reasons)


def policy_factory(overrides_text: str) -> Callable[[ModelMetadata], Policy]:
    """What the model manager calls for each version it loads: the version's thresholds with
    the configured overrides (`--policy-thresholds`) on top."""
    overrides = parse_overrides(overrides_text)

    def make(metadata: ModelMetadata) -> Policy:
        return Policy(list(metadata.class_names), metadata.benign_class, metadata.thresholds, overrides)

    return make
