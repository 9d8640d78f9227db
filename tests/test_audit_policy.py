"""The audit sampling policy: what is recorded, deterministically, at what rate."""

from __future__ import annotations

import hashlib
import math

import pytest

from server.audit.records import AuditReason
from server.config import AuditConfig
from server.pipeline.audit_sampling import AuditPolicy, parse_rates
from server.types import Decision

HASHES = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(100_000)]


def scores_for(top: str, p: float = 0.9) -> dict[str, float]:
    rest = (1 - p) / 2
    return {c: (p if c == top else rest) for c in ("ham", "sexual", "personal_info")}


def within_six_sd(count: int, n: int, rate: float) -> bool:
    # Binomial(n, rate); 6 sd either side fails about once in 10^9 runs.
    sd = math.sqrt(n * rate * (1 - rate))
    return abs(count - n * rate) < 6 * sd + 1


def test_per_class_rates_hold_on_100k_hashes_and_repeat_exactly():
    policy = AuditPolicy(AuditConfig(sample_rate=0.02, class_sample_rates="ham=0.01,personal_info=0.05"))
    for top, rate in (("ham", 0.01), ("sexual", 0.02), ("personal_info", 0.05)):
        scores = scores_for(top)
        choices = [policy.choose(Decision.PASS, scores, top, h) for h in HASHES]
        picked = [h for h, c in zip(HASHES, choices, strict=True) if c.sampled]
        assert within_six_sd(len(picked), len(HASHES), rate), (top, len(picked))
        assert all(c.reason == AuditReason.SAMPLED and c.decision == Decision.PASS for c in choices if c.sampled)
        assert all(c.reason is None for c in choices if not c.sampled)
        # A re-upload (same bytes, same hash) gets the same answer, on any replica.
        again = AuditPolicy(AuditConfig(sample_rate=0.02, class_sample_rates="ham=0.01,personal_info=0.05"))
        assert picked == [h for h in HASHES if again.choose(Decision.PASS, scores, top, h).sampled]
        assert policy.sample_weight(AuditReason.SAMPLED, top) == pytest.approx(1 / rate)


def test_a_higher_rate_samples_a_superset():
    # Threshold sampling on one hash-derived number: raising a rate never un-samples an image,
    # so operators' earlier verdicts stay part of the sample.
    low = AuditPolicy(AuditConfig(sample_rate=0.01))
    high = AuditPolicy(AuditConfig(sample_rate=0.05))
    scores = scores_for("ham")
    low_set = {h for h in HASHES[:20_000] if low.choose(Decision.PASS, scores, "ham", h).sampled}
    high_set = {h for h in HASHES[:20_000] if high.choose(Decision.PASS, scores, "ham", h).sampled}
    assert low_set < high_set


def test_flagged_decisions_are_always_recorded_and_never_marked_sampled():
    policy = AuditPolicy(AuditConfig(sample_rate=0.0))
    for decision in (Decision.REVIEW, Decision.BLOCK):
        choice = policy.choose(decision, scores_for("sexual"), "sexual", HASHES[0])
        assert (choice.decision, choice.reason, choice.sampled) == (decision, AuditReason.FLAGGED, False)
        assert policy.sample_weight(AuditReason.FLAGGED, "sexual") == 1.0
    assert policy.choose(Decision.PASS, scores_for("ham"), "ham", HASHES[0]).reason is None


def test_low_confidence_pass_becomes_review():
    policy = AuditPolicy(AuditConfig(sample_rate=1.0, low_confidence_min=0.4, low_confidence_max=0.6))
    unsure = policy.choose(Decision.PASS, scores_for("ham", 0.45), "ham", HASHES[0])
    assert (unsure.decision, unsure.reason, unsure.sampled) == (Decision.REVIEW, AuditReason.LOW_CONFIDENCE, False)
    assert policy.choose(Decision.PASS, scores_for("ham", 0.6), "ham", HASHES[0]).reason == AuditReason.SAMPLED
    assert policy.choose(Decision.PASS, scores_for("ham", 0.4), "ham", HASHES[0]).reason == AuditReason.LOW_CONFIDENCE
    # A threshold decision is left alone: it is flagged anyway.
    assert policy.choose(Decision.BLOCK, scores_for("sexual", 0.5), "sexual", HASHES[0]).reason == AuditReason.FLAGGED
    # max <= min: no band.
    off = AuditPolicy(AuditConfig(sample_rate=0.0))
    assert off.choose(Decision.PASS, scores_for("ham", 0.34), "ham", HASHES[0]).decision == Decision.PASS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ham", "form class=0.05"),
        ("=0.1", "form class=0.05"),
        ("ham=1.5", "within"),
        ("ham=lots", "could not convert"),
    ],
)
def test_bad_rates_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rates(text)


def test_rates_parse():
    assert parse_rates(" ham=0.01, personal_info=0.05 ,") == {"ham": 0.01, "personal_info": 0.05}
    with pytest.raises(ValueError, match="sample_rate"):
        AuditPolicy(AuditConfig(sample_rate=2.0))
