"""The one configuration tree, built in main() from flags and environment variables.

Every field of every section is settable as a flag `--<section>-<field>` (dashes for
underscores) and as an environment variable `MODERATION_<SECTION>_<FIELD>`; a flag wins over
the environment, the environment over the default. Nothing is parsed at import time."""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field

from model.preprocess import DecodeConfig
from model.reader.config import ReaderConfig


@dataclass(frozen=True)
class FetchConfig:
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    # Counted on the decoded body: a gzip/deflate response must not expand past it.
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    max_connections: int = 100
    max_connections_per_host: int = 16
    # CIDRs ("127.0.0.0/8") allow any port on those addresses; host:port entries
    # ("127.0.0.1:8080", "images.internal:443", "[::1]:8080") allow exactly that port.
    allow: tuple[str, ...] = ()
    user_agent: str = "moderation-service/0.1"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464  # -1 disables the metrics HTTP server; 0 picks a free port
    # SIGTERM: health turns NOT_SERVING and calls are still accepted for drain_delay_s, so
    # load balancers notice before the port closes; then in-flight calls get grace_s to finish.
    drain_delay_s: float = 1.0
    grace_s: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_calls: int = 64  # beyond it: RESOURCE_EXHAUSTED, no unbounded queue
    default_deadline_s: float = 30.0  # applied when the caller sets no deadline
    # TLS for the API port: certificate chain and key files (PEM). With tls_client_ca as well,
    # clients must present a certificate signed by that CA (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # A file of accepted bearer tokens, one per line; when set, every Classify / Predict / audit
    # call needs `authorization: Bearer <token>` metadata. Health and reflection stay open so
    # load balancers and probes work without credentials.
    auth_tokens_file: str = ""


@dataclass(frozen=True)
class LimitsConfig:
    max_images: int = 16
    max_inline_bytes: int = 10 * 1024 * 1024  # per image
    max_url_length: int = 2048
    max_predict_images: int = 64  # per TensorFlow Serving Predict call
    max_id_length: int = 256


@dataclass(frozen=True)
class ModelConfig:
    repository: str = "models"
    name: str = "moderation"
    # auto: ONNX Runtime when the version ships a model.onnx that passed its parity check,
    # else the TensorFlow SavedModel (which costs ~400 MB more per process). Also: onnx,
    # onnx_int8 (the int8 model `python -m training quantize` adds; refused unless its evaluation
    # accepted it within int8_auc_margin), savedmodel, keras (Keras predict per call: the slow
    # baseline), tfserving (remote).
    engine: str = "auto"
    # process: decode + inference in `workers` worker processes (default: one per core);
    # thread: the same on `workers` threads of the server process, one shared engine; each batch
    # runs on its slot's thread with `threads` intra-op threads.
    runner: str = "process"
    workers: int = 0  # 0 = number of cores available to this process
    threads: int = 1  # intra-op threads per worker; one single-threaded engine per core measured fastest
    # Batches in flight per worker process: with 2 the next one already waits in the worker's pipe
    # when it finishes one, so a worker never idles while the front process is busy. Measured on
    # 2 shared cores (2026-11-22, loop-driven pipes): saturation 228-235 vs 211-223 img/s, and a
    # lower p99 for 4-image posts at half load (110 vs 118-193 ms).
    pipeline_depth: int = 2
    parity_tolerance: float = 1e-4
    # The largest per-class AUC drop (float32 -> int8, on the version's evaluation images, as
    # recorded by training/quantize.py) this server accepts for onnx_int8; it can only tighten the
    # quantizer's own --auc-margin, since a model that quantizer refused is never served.
    int8_auc_margin: float = 0.005
    # auto: use an accepted int8 model when the version has one. Off by default: int8 changes
    # every score slightly, and the thresholds were chosen on the float32 ones.
    prefer_int8: bool = False
    tfserving_target: str = ""  # host:port of a TensorFlow Serving PredictionService, for engine=tfserving
    tfserving_model: str = ""  # model name there; default: this model's name
    poll_interval_s: float = 5.0  # how often models/<name>/ is checked for a new version; 0 = never
    # A new version is loaded after a random delay up to this, so replicas sharing a repository
    # do not all spend CPU on loading it at the same moment.
    rollout_jitter_s: float = 3.0
    # A worker loads and warms its model on a thread at this nice value (Linux: niceness is per
    # thread), then serves at the process's own priority: a rollout's or a crashed worker's
    # replacement then uses spare CPU instead of the serving workers'. 0 = the same priority.
    load_nice: int = 10


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 8  # per runner slot: one worker; larger batches only cost memory (bench)
    # How long a freed slot waits for company while every other slot is busy (an idle slot
    # beside it means spare capacity: the image goes at once).
    max_queue_delay_ms: float = 2.0
    max_queued_images: int = 512  # beyond it: RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class PolicyConfig:
    # "class.review=0.4,class.block=0.9": overrides the model metadata's thresholds.
    thresholds: str = ""
    # The decision given to an image that could not be classified (404, corrupt...): the
    # post cannot be called safe when part of it was never looked at.
    on_error: str = "REVIEW"


@dataclass(frozen=True)
class AuditConfig:
    url: str = "sqlite:///var/audit.sqlite3"  # or postgresql://user@host:5432/db[?schema=name]
    sample_rate: float = 0.01  # share of PASS decisions recorded for a human audit
    # Per class of the top score, overriding sample_rate: "ham=0.01,personal_info=0.05".
    class_sample_rates: str = ""
    sample_salt: str = ""
    # A PASS whose top score lies in [min, max) is made REVIEW and recorded; max <= min: off.
    low_confidence_min: float = 0.0
    low_confidence_max: float = 0.0
    queue_size: int = 10_000
    flush_interval_s: float = 0.5
    batch_size: int = 500
    # Where batches go while the store is down; "": beside the SQLite file, or
    # var/audit-spill.jsonl for PostgreSQL.
    spill_path: str = ""
    write_timeout_s: float = 10.0  # per store statement; a slower one counts as a failure and spills
    retry_initial_s: float = 0.5  # store retry backoff while spilling, doubling up to retry_max_s
    retry_max_s: float = 30.0
    drift_interval_s: float = 60.0  # how often drift gauges are recomputed from the store; 0 = never
    drift_windows: tuple[str, ...] = ("1h", "1d", "7d")
    drift_min_records: int = 100  # fewer records in a window: no PSI/mix gauges for it
    drift_max_records: int = 200_000  # newest records read per computation
    review_lease_s: float = 600.0  # NextForReview lease when the request names none
    review_max_lease_s: float = 3600.0
    review_max_items: int = 200  # per NextForReview call
    max_verdicts_per_call: int = 1000


@dataclass(frozen=True)
class ReviewConfig:
    """The operators' review tool (`python -m review`), a web app and a client of the
    Audit API; it fetches images with the fetch and decode sections' limits and allow-list."""

    host: str = "127.0.0.1"
    port: int = 8080
    # The moderation service's gRPC address; TLS as in server/api/client.py (ca "system": system roots).
    target: str = "127.0.0.1:50051"
    target_ca: str = ""
    target_cert: str = ""
    target_key: str = ""
    target_token_file: str = ""  # first line: the bearer token, when the service requires one
    # The operators' shared login token. A flag shows in `ps`: prefer token_file or the
    # environment. Neither set: a random token is made at start and logged.
    token: str = ""
    token_file: str = ""
    session_idle_s: float = 8 * 3600.0
    cookie_secure: bool = False  # mark the session cookie Secure (behind an HTTPS proxy)
    batch_size: int = 20  # records leased per queue fetch
    lease_s: float = 900.0
    # dHash bits two images may differ in and still count as near-duplicates (0..64); -1: only
    # byte-identical images are grouped.
    duplicate_distance: int = 6
    image_cache_items: int = 1024  # re-encoded images kept in memory
    max_image_side: int = 1024  # served images are scaled down to this


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    log_level: str = "INFO"


def _parse_value(kind: type, text: str):
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return kind(text)


def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # `X | None`: parse as X
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        out[f.name] = kind
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for section in dataclasses.fields(Config):
        hints = _field_types(Config)
        if not dataclasses.is_dataclass(hints[section.name]):
            parser.add_argument(f"--{section.name.replace('_', '-')}", dest=section.name, default=None)
            continue
        group = parser.add_argument_group(section.name)
        for name in _field_types(hints[section.name]):
            flag = f"--{section.name}-{name}".replace("_", "-")
            default = getattr(hints[section.name](), name)
            group.add_argument(
                flag,
                dest=f"{section.name}.{name}",
                default=None,
                help=f"(env MODERATION_{section.name.upper()}_{name.upper()}; default {default!r})",
            )


def build_config(args: argparse.Namespace | None = None, environ: typing.Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    given = vars(args) if args is not None else {}
    sections: dict[str, typing.Any] = {}
    top: dict[str, typing.Any] = {}
    for section in dataclasses.fields(Config):
        kind = _field_types(Config)[section.name]
        if not dataclasses.is_dataclass(kind):
            text = given.get(section.name) or environ.get(f"MODERATION_{section.name.upper()}")
            if text is not None:
                top[section.name] = _parse_value(kind, text)
            continue
        values = {}
        for name, field_kind in _field_types(kind).items():
            text = given.get(f"{section.name}.{name}")
            if text is None:
                text = environ.get(f"MODERATION_{section.name.upper()}_{name.upper()}")
            if text is not None:
                try:
                    values[name] = _parse_value(field_kind, text)
                except ValueError as exc:
                    raise SystemExit(f"config {section.name}.{name}: {exc}") from exc
        sections[section.name] = kind(**values)
    return Config(**sections, **top)
