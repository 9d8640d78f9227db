"""Drift figures on synthetic streams with a known shift, and the gauges the monitor exports
from a real store."""

from __future__ import annotations

import numpy as np
import pytest

from model.repository import ModelMetadata
from server.audit.drift import DriftMonitor, compute, parse_window, psi, wilson_interval, window_stats
from server.audit.records import AuditReason, AuditRecord, Verdict
from server.audit.sql_store import DriftRow
from server.metrics import Metrics
from tests.audit_support import audit_store_fixture  # noqa: F401

CLASSES = ("ham", "sexual", "personal_info")
NOW = 1_800_000_000.0
BINS = np.linspace(0, 1, 11)


def scores_from(rng: np.random.Generator, n: int, sexual_shift: float = 0.0) -> np.ndarray:
    """n x 3 softmax-like scores: mostly ham; `sexual_shift` moves sexual scores up."""
    logits = rng.normal([2.0, -1.0 + sexual_shift, -1.5], 1.0, size=(n, 3))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def baseline_of(scores: np.ndarray) -> dict:
    histograms = {c: np.histogram(scores[:, i], bins=BINS)[0].tolist() for i, c in enumerate(CLASSES)}
    tops = np.array(CLASSES)[scores.argmax(axis=1)]
    return {
        "bin_edges": BINS.tolist(),
        "histograms": histograms,
        "examples": len(scores),
        "decision_mix": {"PASS": 0.9, "REVIEW": 0.07, "BLOCK": 0.03},
        "class_mix": {c: float((tops == c).mean()) for c in CLASSES},
    }


def metadata(baseline: dict, version: int = 1) -> ModelMetadata:
    return ModelMetadata(
        name="moderation",
        version=version,
        class_names=CLASSES,
        input_size=32,
        head="softmax",
        benign_class="ham",
        thresholds={"sexual": {"review": 0.5, "block": 0.9}, "personal_info": {"review": 0.5, "block": 0.9}},
        created_at="2026-01-01T00:00:00Z",
        score_baseline=baseline,
    )


def rows_from(scores: np.ndarray, created_at: float = NOW - 60, version: str = "1") -> list[DriftRow]:
    out = []
    for row in scores:
        top = CLASSES[int(row.argmax())]
        decision = "BLOCK" if max(row[1:]) >= 0.9 else "REVIEW" if max(row[1:]) >= 0.5 else "PASS"
        out.append(
            DriftRow(
                created_at,
                "moderation",
                version,
                dict(zip(CLASSES, row.tolist(), strict=True)),
                top,
                decision,
                "flagged",
                1.0,
                None,
            )
        )
    return out


def test_wilson_interval_known_values():
    assert wilson_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0.1, 1000) == pytest.approx((0.0829, 0.1202), abs=1e-4)
    assert wilson_interval(0.3, 0) == (0.0, 1.0)


def test_psi_known_values():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5), rel=1e-9)
    assert psi([10, 10], [9, 1]) == pytest.approx(psi([0.5, 0.5], [0.9, 0.1]))  # counts or shares
    assert psi([1, 0], [0, 1]) > 10  # empty bins are floored, not infinite
    with pytest.raises(ValueError):
        psi([1, 1], [1, 1, 1])


def test_windows_parse():
    assert [parse_window(w) for w in ("90s", "15m", "1h", "1d", "1w", "0.5h")] == [90, 900, 3600, 86400, 604800, 1800]
    for bad in ("", "1", "h", "1y", "-1h", "0m"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_psi_finds_a_known_shift_and_stays_quiet_without_one():
    rng = np.random.default_rng(7)
    meta = metadata(baseline_of(scores_from(rng, 20_000)))
    same = window_stats(rows_from(scores_from(rng, 5_000)), "moderation", "1", "1h", meta, min_records=100)
    assert max(same.psi.values()) < 0.02
    assert set(same.psi) == set(CLASSES)
    shifted = window_stats(
        rows_from(scores_from(rng, 5_000, sexual_shift=2.0)), "moderation", "1", "1h", meta, min_records=100
    )
    assert shifted.psi["sexual"] > 0.25  # the customary "significant shift"
    assert shifted.psi["personal_info"] < shifted.psi["sexual"]
    assert shifted.class_mix_psi > same.class_mix_psi
    # Too few records: no PSI, no mix, but the count.
    few = window_stats(rows_from(scores_from(rng, 50)), "moderation", "1", "1h", meta, min_records=100)
    assert few.records == 50 and few.psi == {} and few.decision_share == {}


def test_sample_weights_rebuild_the_traffic_mix_from_the_recorded_share():
    # True traffic: 95% PASS (ham-topped), 5% flagged. Recorded: every flagged image and 1% of
    # the PASSes, each standing for 100.
    rng = np.random.default_rng(3)
    rows = []
    for i in range(100_000):
        if i % 20 == 0:
            rows.append(
                DriftRow(NOW - 10, "m", "1", {"ham": 0.2, "sexual": 0.8}, "sexual", "REVIEW", "flagged", 1.0, None)
            )
        elif rng.random() < 0.01:
            rows.append(
                DriftRow(NOW - 10, "m", "1", {"ham": 0.9, "sexual": 0.1}, "ham", "PASS", "sampled", 100.0, None)
            )
    stats = window_stats(rows, "m", "1", "1h", None, min_records=100)
    assert stats.decision_share["PASS"] == pytest.approx(0.95, abs=0.01)
    assert stats.class_share["sexual"] == pytest.approx(0.05, abs=0.01)


def test_miss_rate_and_its_interval_on_a_known_stream():
    rng = np.random.default_rng(11)
    true_rate = 0.08
    rows = [
        DriftRow(
            NOW - 10,
            "moderation",
            "1",
            {"ham": 0.9, "sexual": 0.1},
            "ham",
            "PASS",
            "sampled",
            100.0,
            "sexual" if rng.random() < true_rate else "ham",
        )
        for _ in range(3000)
    ]
    # Flagged records and unjudged samples do not count towards the miss rate.
    rows += [
        DriftRow(NOW - 10, "moderation", "1", {"ham": 0.1, "sexual": 0.9}, "sexual", "BLOCK", "flagged", 1.0, "sexual")
    ] * 500
    rows += [
        DriftRow(NOW - 10, "moderation", "1", {"ham": 0.9, "sexual": 0.1}, "ham", "PASS", "sampled", 100.0, None)
    ] * 500
    stats = window_stats(rows, "moderation", "1", "1d", metadata({}), min_records=100)
    assert stats.verdicts == 3000
    assert stats.miss_lower < true_rate < stats.miss_upper
    assert stats.miss_rate == pytest.approx(true_rate, abs=0.015)
    assert stats.miss_upper - stats.miss_lower < 0.025
    assert stats.psi == {}  # no baseline: no PSI


def test_windows_slide_and_versions_are_kept_apart():
    rng = np.random.default_rng(5)
    meta = {
        ("moderation", "1"): metadata(baseline_of(scores_from(rng, 5000))),
        ("moderation", "2"): metadata(baseline_of(scores_from(rng, 5000)), version=2),
    }
    rows = (
        rows_from(scores_from(rng, 300), created_at=NOW - 2 * 86400, version="1")
        + rows_from(scores_from(rng, 200), created_at=NOW - 600, version="1")
        + rows_from(scores_from(rng, 150), created_at=NOW - 600, version="2")
    )
    stats = compute(rows, NOW, {"1h": 3600, "1d": 86400, "7d": 7 * 86400}, lambda n, v: meta.get((n, v)), 100)
    counts = {(s.model_version, s.window): s.records for s in stats}
    assert counts == {
        ("1", "1h"): 200,
        ("1", "1d"): 200,
        ("1", "7d"): 500,
        ("2", "1h"): 150,
        ("2", "1d"): 150,
        ("2", "7d"): 150,
    }


def test_the_monitor_exports_gauges_from_the_store(audit_store):
    rng = np.random.default_rng(9)
    baseline = baseline_of(scores_from(rng, 10_000))
    live = scores_from(rng, 400, sexual_shift=2.5)
    records = []
    for i, row in enumerate(live):
        top = CLASSES[int(row.argmax())]
        records.append(
            AuditRecord(
                request_id=f"r{i}",
                post_id=f"p{i}",
                image_id="a",
                url="",
                content_sha256=f"{i:064x}",
                scores=dict(zip(CLASSES, row.tolist(), strict=True)),
                top_class=top,
                decision="PASS" if top == "ham" else "REVIEW",
                reason=AuditReason.SAMPLED if top == "ham" else AuditReason.FLAGGED,
                model_name="moderation",
                model_version="1",
                created_at=NOW - 100 - i,
                record_id=f"rec-{i}",
                sample_weight=1.0,
            )
        )
    audit_store.write(records)
    sampled = [r.record_id for r in records if r.reason == AuditReason.SAMPLED][:40]
    audit_store.submit_verdicts(
        [Verdict(label="sexual" if i < 10 else "ham", operator="op", record_id=rid) for i, rid in enumerate(sampled)]
    )
    metrics = Metrics()
    monitor = DriftMonitor(
        audit_store,
        metrics,
        lambda n, v: metadata(baseline) if v == "1" else None,
        ["1h", "1d"],
        interval_s=0,
        min_records=100,
    )
    monitor.run_once(now=NOW)
    get = metrics.registry.get_sample_value
    labels = {"model_name": "moderation", "model_version": "1", "window": "1h"}
    assert get("moderation_drift_records", labels) == 400
    assert get("moderation_drift_miss_rate_verdicts", labels) == 40
    assert get("moderation_drift_miss_rate", labels) == pytest.approx(0.25)
    lower, upper = get("moderation_drift_miss_rate_lower", labels), get("moderation_drift_miss_rate_upper", labels)
    assert lower < 0.25 < upper
    assert get("moderation_drift_psi", {**labels, "class": "sexual"}) > 0.25
    assert (
        get(
            "moderation_drift_decision_share_baseline",
            {"model_name": "moderation", "model_version": "1", "decision": "PASS"},
        )
        == 0.9
    )
    assert get("moderation_drift_decision_mix_psi", labels) is not None
    assert (
        get("moderation_audit_backlog", {"reason": "flagged"}) + get("moderation_audit_backlog", {"reason": "sampled"})
        == 360
    )
    assert get("moderation_audit_backlog_oldest_seconds") == pytest.approx(100 + 399)
    assert get("moderation_audit_store_up") == 1
    # An hour and a day later the records have left the 1h window, then every window: the
    # gauges go with them instead of reporting stale figures.
    monitor.run_once(now=NOW + 2 * 3600)
    assert get("moderation_drift_records", labels) is None
    assert get("moderation_drift_records", {**labels, "window": "1d"}) == 400
    monitor.run_once(now=NOW + 3 * 86400)
    assert get("moderation_drift_records", {**labels, "window": "1d"}) is None
    assert get("moderation_drift_psi", {**labels, "class": "sexual"}) is None
