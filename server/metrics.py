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
        self.calls = Counter("moderation_calls", "Calls by method and final gRPC status code", ["method", "code"],
                             registry=r)
        self.images = Counter("moderation_images", "Images by outcome (ok or the per-image error code) and decision",
                              ["outcome", "decision"], registry=r)
        self.call_seconds = Histogram("moderation_call_seconds", "Whole Classify call latency",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("moderation_stage_seconds",
                                       "Per-image latency of one stage: fetch, decode, queue (wait for a batch), "
                                       "inference (the batch's model call)",
                                       ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.fetched_bytes = Counter("moderation_fetched_bytes", "Bytes of image bodies fetched from URLs",
                                     registry=r)
        self.inline_bytes = Counter("moderation_inline_bytes", "Bytes of images sent inline", registry=r)
        self.batch_size = Histogram("moderation_batch_size", "Images per model call", buckets=_BATCH_BUCKETS,
                                    registry=r)
        self.inflight_calls = Gauge("moderation_inflight_calls", "Classify calls in progress", registry=r)
        self.queued_images = Gauge("moderation_queued_images", "Images waiting for a model call", registry=r)
        self.model_info = Gauge("moderation_model_info", "The model version in service (value 1)",
                                ["name", "version", "engine"], registry=r)
        self.model_loads = Counter("moderation_model_loads", "Model version loads by result", ["result"], registry=r)
        self.audit_records = Counter("moderation_audit_records", "Audit records written, by reason", ["reason"],
                                     registry=r)
        self.audit_dropped = Counter("moderation_audit_dropped", "Audit records lost (queue full or write failed)",
                                     registry=r)
        self.audit_queued = Gauge("moderation_audit_queued", "Audit records waiting to be written", registry=r)
        self.audit_write_seconds = Histogram("moderation_audit_write_seconds", "Latency of one batched audit write",
                                             buckets=_LATENCY_BUCKETS, registry=r)
