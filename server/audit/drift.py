"""Drift figures, computed periodically from the audit store (never per call), so every replica
that reads the same store reports the same numbers.

- Miss rate: among sampled PASSes that an operator has judged, the share judged not benign,
  with a 95% Wilson interval; per model version and sliding window (by record creation time).
- Score PSI: per class, the population stability index of the live score distribution against
  the histogram stored with the model version (ModelMetadata.score_baseline); no labels needed.
- Mix: the live share of each decision and of each top class, and its PSI against the baseline.

The store holds every flagged image but only a sample of PASSes, so each record counts with its
sample_weight (1 / its chance of being recorded): the weighted records estimate all traffic."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client import Gauge

from model.repository import ModelMetadata, load_metadata, version_dir
from server.audit.sql_store import DriftRow
from server.errors import AuditStoreUnavailable
from server.metrics import Metrics

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Floor for an empty bin's share: PSI is infinite otherwise. 1e-4 is the customary choice.
PSI_EPSILON = 1e-4


def parse_window(text: str) -> float:
    """'90s', '15m', '1h', '1d', '1w' -> seconds."""
    text = text.strip()
    try:
        value, unit = float(text[:-1]), _UNITS[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"drift window {text!r} is not a number followed by s, m, h, d or w") from None
    if value <= 0:
        raise ValueError(f"drift window {text!r} must be positive")
    return value * unit


def wilson_interval(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion p observed over n trials (n may be an
    effective, non-integer sample size)."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `actual` against `expected` (counts or shares per bin):
    sum over bins of (a - e) * ln(a / e) on shares. Customary reading: < 0.1 stable, 0.1-0.25
    moderate shift, > 0.25 significant shift."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty distributions over the same bins")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Baseline:
    """ModelMetadata.score_baseline, checked. See model/repository.py for the format."""

    bins: np.ndarray
    classes: dict[str, np.ndarray]
    decision_mix: dict[str, float]
    class_mix: dict[str, float]

    @classmethod
    def of(cls, metadata: ModelMetadata | None) -> Baseline | None:
        """The version's baseline, or None when it has none or a malformed one (logged)."""
        if metadata is None:
            return None
        try:
            return cls.from_metadata(metadata.score_baseline)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "model %s version %s: score_baseline unusable, no PSI: %s", metadata.name, metadata.version, exc
            )
            return None

    @classmethod
    def from_metadata(cls, data: dict) -> Baseline | None:
        if not data:
            return None
        # `bins`/`classes` are the names first proposed; training writes `bin_edges`/`histograms`.
        edges = data.get("bin_edges", data.get("bins"))
        if edges is None:
            return None
        bins = np.asarray(edges, dtype=float)
        if bins.ndim != 1 or len(bins) < 2 or np.any(np.diff(bins) <= 0):
            raise ValueError(f"score_baseline bin_edges must be at least two ascending edges: {edges}")
        classes = {}
        for name, counts in (data.get("histograms", data.get("classes")) or {}).items():
            array = np.asarray(counts, dtype=float)
            if array.shape != (len(bins) - 1,) or array.sum() <= 0 or np.any(array < 0):
                raise ValueError(f"score_baseline classes[{name!r}] must be {len(bins) - 1} non-negative counts")
            classes[name] = array
        return cls(
            bins,
            classes,
            {k: float(v) for k, v in (data.get("decision_mix") or {}).items()},
            {k: float(v) for k, v in (data.get("class_mix") or {}).items()},
        )


@dataclass
class WindowStats:
    model_name: str
    model_version: str
    window: str
    records: int
    verdicts: int = 0
    miss_rate: float | None = None
    miss_lower: float | None = None
    miss_upper: float | None = None
    psi: dict[str, float] = field(default_factory=dict)
    decision_share: dict[str, float] = field(default_factory=dict)
    decision_mix_psi: float | None = None
    class_share: dict[str, float] = field(default_factory=dict)
    class_mix_psi: float | None = None


def _shares(keys: Sequence[str], weights: np.ndarray) -> dict[str, float]:
    total = float(weights.sum())
    out: dict[str, float] = {}
    for key, weight in zip(keys, weights, strict=True):
        out[key] = out.get(key, 0.0) + float(weight)
    return {k: v / total for k, v in sorted(out.items())}


def _mix_psi(baseline: dict[str, float], live: dict[str, float]) -> float | None:
    if not baseline:
        return None
    keys = sorted(set(baseline) | set(live))
    return psi([baseline.get(k, 0.0) for k in keys], [live.get(k, 0.0) for k in keys])


def window_stats(
    rows: Sequence[DriftRow],
    model_name: str,
    model_version: str,
    window: str,
    metadata: ModelMetadata | None,
    min_records: int,
) -> WindowStats:
    """Drift figures of one model version over `rows` (already cut to the window)."""
    stats = WindowStats(model_name, model_version, window, records=len(rows))
    benign = metadata.benign_class if metadata is not None else None
    baseline = Baseline.of(metadata)

    judged = [r for r in rows if r.reason == "sampled" and r.verdict_label is not None]
    stats.verdicts = len(judged)
    if judged and benign is not None:
        weights = np.array([r.sample_weight for r in judged])
        missed = np.array([r.verdict_label != benign for r in judged], dtype=float)
        stats.miss_rate = float((weights * missed).sum() / weights.sum())
        # Kish's effective sample size: unequal weights carry less information than their count.
        effective_n = float(weights.sum() ** 2 / (weights**2).sum())
        stats.miss_lower, stats.miss_upper = wilson_interval(stats.miss_rate, effective_n)

    if len(rows) < min_records:
        return stats
    weights = np.array([r.sample_weight for r in rows])
    stats.decision_share = _shares([r.decision for r in rows], weights)
    stats.class_share = _shares([r.top_class for r in rows], weights)
    if baseline is not None:
        stats.decision_mix_psi = _mix_psi(baseline.decision_mix, stats.decision_share)
        stats.class_mix_psi = _mix_psi(baseline.class_mix, stats.class_share)
        low, high = baseline.bins[0], baseline.bins[-1]
        for name, expected in baseline.classes.items():
            values = np.array([r.scores.get(name, np.nan) for r in rows])
            present = ~np.isnan(values)
            if not present.any():
                continue
            # Clip so a score of exactly 1.0 (or a rounding past an edge) lands in an end bin.
            live, _ = np.histogram(np.clip(values[present], low, high), bins=baseline.bins, weights=weights[present])
            stats.psi[name] = psi(expected, live)
    return stats


def compute(
    rows: Sequence[DriftRow],
    now: float,
    windows: dict[str, float],
    metadata_for: Callable[[str, str], ModelMetadata | None],
    min_records: int,
) -> list[WindowStats]:
    """Every (model version, window) with records in it."""
    by_version: dict[tuple[str, str], list[DriftRow]] = {}
    for row in rows:
        by_version.setdefault((row.model_name, row.model_version), []).append(row)
    out = []
    for (name, version), version_rows in sorted(by_version.items()):
        metadata = metadata_for(name, version)
        for window, seconds in windows.items():
            inside = [r for r in version_rows if r.created_at >= now - seconds]
            if inside:
                out.append(window_stats(inside, name, version, window, metadata, min_records))
    return out


class RepositoryBaselines:
    """(model name, version) -> that version's metadata, read from the model repository every
    replica shares. A version that cannot be read (deleted, broken) gives None."""

    def __init__(self, repository: str | Path):
        self._repository = Path(repository)
        self._cache: dict[tuple[str, str], ModelMetadata] = {}

    def __call__(self, model_name: str, model_version: str) -> ModelMetadata | None:
        key = (model_name, model_version)
        if key not in self._cache:
            try:
                self._cache[key] = load_metadata(version_dir(self._repository, model_name, int(model_version)))
            except (OSError, ValueError) as exc:
                log.debug("no metadata for %s version %s: %s", model_name, model_version, exc)
                return None
        return self._cache[key]


class DriftMonitor:
    """Recomputes the drift and backlog gauges every `interval_s` in a background thread."""

    def __init__(
        self,
        store,
        metrics: Metrics,
        metadata_for: Callable[[str, str], ModelMetadata | None],
        windows: Sequence[str],
        interval_s: float,
        min_records: int = 100,
        max_records: int = 200_000,
    ):
        self._store = store
        self._metrics = metrics
        self._metadata_for = metadata_for
        self.windows = {w.strip(): parse_window(w) for w in windows}
        if not self.windows:
            raise ValueError("at least one drift window is needed")
        self._interval_s = interval_s
        self._min_records = min_records
        self._max_records = max_records
        self._published: dict[Gauge, set[tuple[str, ...]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except AuditStoreUnavailable as exc:
                # The audit writer spills meanwhile; the gauges keep their last figures.
                self._metrics.drift_runs.labels("failed").inc()
                self._metrics.audit_store_up.set(0)
                log.warning("drift computation failed: %s", exc)
            except Exception:
                self._metrics.drift_runs.labels("failed").inc()
                log.exception("drift computation failed")
            self._stop.wait(self._interval_s)

    def run_once(self, now: float | None = None) -> list[WindowStats]:
        now = time.time() if now is None else now
        rows = self._store.drift_rows(now - max(self.windows.values()), self._max_records)
        counts, oldest = self._store.backlog()
        stats = compute(rows, now, self.windows, self._metadata_for, self._min_records)
        self._publish(stats, counts, None if oldest is None else max(0.0, now - oldest))
        self._metrics.audit_store_up.set(1)
        self._metrics.drift_runs.labels("ok").inc()
        self._metrics.drift_last_success.set(now)
        return stats

    def _publish(self, stats: list[WindowStats], backlog: dict[str, int], oldest_age: float | None) -> None:
        m = self._metrics
        values: dict[Gauge, dict[tuple[str, ...], float]] = {}

        def put(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
            if value is not None:
                values.setdefault(gauge, {})[labels] = value

        for s in stats:
            key = (s.model_name, s.model_version, s.window)
            put(m.drift_records, key, s.records)
            put(m.drift_miss_rate_verdicts, key, s.verdicts)
            put(m.drift_miss_rate, key, s.miss_rate)
            put(m.drift_miss_rate_lower, key, s.miss_lower)
            put(m.drift_miss_rate_upper, key, s.miss_upper)
            put(m.drift_decision_mix_psi, key, s.decision_mix_psi)
            put(m.drift_class_mix_psi, key, s.class_mix_psi)
            for cls, value in s.psi.items():
                put(m.drift_psi, (*key, cls), value)
            for decision, share in s.decision_share.items():
                put(m.drift_decision_share, (*key, decision), share)
            for cls, share in s.class_share.items():
                put(m.drift_class_share, (*key, cls), share)
        for name, version in sorted({(s.model_name, s.model_version) for s in stats}):
            baseline = Baseline.of(self._metadata_for(name, version))
            if baseline is not None:
                for decision, share in baseline.decision_mix.items():
                    put(m.drift_decision_share_baseline, (name, version, decision), share)
                for cls, share in baseline.class_mix.items():
                    put(m.drift_class_share_baseline, (name, version, cls), share)
        for reason in {*backlog, "flagged", "sampled", "low_confidence"}:
            put(m.audit_backlog, (reason,), backlog.get(reason, 0))
        m.audit_backlog_oldest_seconds.set(oldest_age or 0.0)

        # Set the new values first and only then remove label sets that are gone (a model
        # version that aged out of every window), so a scrape never sees a gauge half-empty.
        for gauge, series in values.items():
            for labels, value in series.items():
                gauge.labels(*labels).set(value)
        for gauge, old in self._published.items():
            for labels in old - set(values.get(gauge, {})):
                gauge.remove(*labels)
        self._published = {gauge: set(series) for gauge, series in values.items()}
