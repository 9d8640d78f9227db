"""Prometheus metrics. One registry per server instance, so tests can run several servers in
one process; main() serves it over HTTP on the metrics port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "moderation_calls", "Calls by method and final gRPC status code", ["method", "code"], registry=r
        )
        self.reading = Counter(
            "moderation_reading",
            "Images by what the text reader did: skipped (the gate saw no text), read, budget_exceeded, failed",
            ["status"],
            registry=r,
        )
        # By type only: a finding's text, masked or not, never becomes a label.
        self.findings = Counter("moderation_findings", "Personal-data findings by entity type", ["entity"], registry=r)
        self.images = Counter(
            "moderation_images",
            "Images by outcome (ok or the per-image error code) and decision",
            ["outcome", "decision"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "moderation_call_seconds", "Whole Classify call latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "moderation_stage_seconds",
            "Per-image latency of one stage: fetch, decode, queue (wait for a batch), "
            "inference (the batch's model call), reading (the text reader's share of the batch, "
            "gate included)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fetched_bytes = Counter("moderation_fetched_bytes", "Bytes of image bodies fetched from URLs", registry=r)
        self.inline_bytes = Counter("moderation_inline_bytes", "Bytes of images sent inline", registry=r)
        self.batch_size = Histogram(
            "moderation_batch_size", "Images per model call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.inflight_calls = Gauge("moderation_inflight_calls", "Classify calls in progress", registry=r)
        self.queued_images = Gauge("moderation_queued_images", "Images waiting for a model call", registry=r)
        self.model_info = Gauge(
            "moderation_model_info", "The model version in service (value 1)", ["name", "version", "engine"], registry=r
        )
        self.model_loads = Counter("moderation_model_loads", "Model version loads by result", ["result"], registry=r)
        self.audit_records = Counter(
            "moderation_audit_records", "Audit records written, by reason", ["reason"], registry=r
        )
        self.audit_dropped = Counter(
            "moderation_audit_dropped",
            "Audit records lost: queue full, or refused by the store (kept in the spill file's .rejected file)",
            registry=r,
        )
        self.audit_queued = Gauge("moderation_audit_queued", "Audit records waiting to be written", registry=r)
        self.audit_write_seconds = Histogram(
            "moderation_audit_write_seconds", "Latency of one batched audit write", buckets=_LATENCY_BUCKETS, registry=r
        )
        # The audit loop: spill and replay, review backlog, verdicts, drift (server/audit/).
        self.audit_spilled = Counter(
            "moderation_audit_spilled",
            "Audit records written to the local spill file because the store failed",
            registry=r,
        )
        self.audit_replayed = Counter(
            "moderation_audit_replayed", "Audit records replayed from the spill file into the store", registry=r
        )
        self.audit_spill_pending = Gauge(
            "moderation_audit_spill_pending", "Audit records in the spill file waiting for the store", registry=r
        )
        self.audit_store_up = Gauge(
            "moderation_audit_store_up", "1 if the last audit store operation succeeded, else 0", registry=r
        )
        self.audit_backlog = Gauge(
            "moderation_audit_backlog", "Audit records waiting for a verdict, by reason", ["reason"], registry=r
        )
        self.audit_backlog_oldest_seconds = Gauge(
            "moderation_audit_backlog_oldest_seconds",
            "Age of the oldest audit record waiting for a verdict",
            registry=r,
        )
        self.audit_verdicts = Counter(
            "moderation_audit_verdicts", "Verdicts submitted, by outcome", ["outcome"], registry=r
        )
        drift = ["model_name", "model_version", "window"]
        self.drift_records = Gauge("moderation_drift_records", "Audit records in the drift window", drift, registry=r)
        self.drift_miss_rate = Gauge(
            "moderation_drift_miss_rate",
            "Share of judged sampled PASSes that operators judged not benign",
            drift,
            registry=r,
        )
        self.drift_miss_rate_lower = Gauge(
            "moderation_drift_miss_rate_lower", "Lower bound of the miss rate's 95% Wilson interval", drift, registry=r
        )
        self.drift_miss_rate_upper = Gauge(
            "moderation_drift_miss_rate_upper", "Upper bound of the miss rate's 95% Wilson interval", drift, registry=r
        )
        self.drift_miss_rate_verdicts = Gauge(
            "moderation_drift_miss_rate_verdicts", "Judged sampled PASSes behind the miss rate", drift, registry=r
        )
        self.drift_psi = Gauge(
            "moderation_drift_psi",
            "Population stability index of one class's live score distribution against the model version's baseline",
            [*drift, "class"],
            registry=r,
        )
        self.drift_decision_share = Gauge(
            "moderation_drift_decision_share", "Live share of each decision", [*drift, "decision"], registry=r
        )
        self.drift_decision_share_baseline = Gauge(
            "moderation_drift_decision_share_baseline",
            "Share of each decision on the model version's baseline data",
            ["model_name", "model_version", "decision"],
            registry=r,
        )
        self.drift_decision_mix_psi = Gauge(
            "moderation_drift_decision_mix_psi",
            "Population stability index of the decision mix against the baseline",
            drift,
            registry=r,
        )
        self.drift_class_share = Gauge(
            "moderation_drift_class_share", "Live share of each top class", [*drift, "class"], registry=r
        )
        self.drift_class_share_baseline = Gauge(
            "moderation_drift_class_share_baseline",
            "Share of each top class on the model version's baseline data",
            ["model_name", "model_version", "class"],
            registry=r,
        )
        self.drift_class_mix_psi = Gauge(
            "moderation_drift_class_mix_psi",
            "Population stability index of the top-class mix against the baseline",
            drift,
            registry=r,
        )
        self.drift_runs = Counter("moderation_drift_runs", "Drift computations by result", ["result"], registry=r)
        self.drift_last_success = Gauge(
            "moderation_drift_last_success_timestamp_seconds", "When the drift gauges were last computed", registry=r
        )
