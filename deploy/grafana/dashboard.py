"""Generates deploy/grafana/dashboards/moderation.json, the provisioned Grafana dashboard.

    python deploy/grafana/dashboard.py            # rewrite the JSON
    python deploy/grafana/dashboard.py --check    # exit 1 if the JSON is not what this file makes

Plain Python, no Grafana SDK: the dashboard is a few dozen panels of one shape, and the JSON
file stays reviewable. tests/test_monitoring.py checks that the committed JSON is this file's
output and that every query names a metric the server exports or a recording rule."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "moderation.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
WINDOW = 'window="$window"'


class Layout:
    """Places panels left to right in a 24-column grid, wrapping into new rows."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._id(),
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
            }
        )
        self.y += 1

    def add(self, panel: dict, w: int = 8, h: int = 8) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[str, float]] | None = None,
    stack: bool = False,
    max_: float | None = None,
) -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for c, v in (thresholds or [])]
    defaults = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if stack else 0,
            "stacking": {"mode": "normal" if stack else "none"},
            "thresholdsStyle": {"mode": "line" if thresholds else "off"},
        },
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def stat(title: str, expr: str, legend: str, unit: str = "short", description: str = "") -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend, "A")],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
            "colorMode": "value",
        },
    }


def quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"p{int(q * 100)}{suffix}")
        for q in (0.5, 0.9, 0.99)
    ]


def build() -> dict:
    g = Layout()
    g.row("Traffic")
    g.add(
        timeseries(
            "Calls by method and code",
            [(f"sum by (method, code) (rate(moderation_calls_total[{RATE}]))", "{{method}} {{code}}")],
            unit="reqps",
        )
    )
    g.add(
        timeseries(
            "Errors by code",
            [
                (f'sum by (method, code) (rate(moderation_calls_total{{code!="OK"}}[{RATE}]))', "{{method}} {{code}}"),
                ("moderation:classify_errors:ratio_rate5m", "Classify server-error ratio (5m)"),
            ],
            unit="short",
            description="Non-OK calls per second; the ratio counts only server-side failures of Classify.",
        )
    )
    g.add(
        timeseries(
            "Model version in service",
            [("count by (name, version, engine) (moderation_model_info == 1)", "{{name}} v{{version}} ({{engine}})")],
            description="Replicas serving each model version: two versions during a rollout, none is an outage.",
        )
    )
    g.add(timeseries("Classify latency", quantiles("moderation_call_seconds"), unit="s", thresholds=[("red", 2.0)]))
    g.add(
        timeseries(
            "Stage latency p99",
            [
                (
                    f"histogram_quantile(0.99, sum by (le, stage) (rate(moderation_stage_seconds_bucket[{RATE}])))",
                    "{{stage}}",
                )
            ],
            unit="s",
            description="Per image: fetch, decode, queue (waiting for a batch), inference.",
        )
    )
    g.add(
        timeseries(
            "Stage latency p50",
            [
                (
                    f"histogram_quantile(0.5, sum by (le, stage) (rate(moderation_stage_seconds_bucket[{RATE}])))",
                    "{{stage}}",
                )
            ],
            unit="s",
        )
    )
    g.add(
        timeseries(
            "Batch size",
            [
                *quantiles("moderation_batch_size"),
                (
                    f"sum(rate(moderation_batch_size_sum[{RATE}])) / sum(rate(moderation_batch_size_count[{RATE}]))",
                    "mean",
                ),
            ],
            description="Images per model call.",
        )
    )
    g.add(
        timeseries(
            "Decisions",
            [(f'sum by (decision) (rate(moderation_images_total{{outcome="ok"}}[{RATE}]))', "{{decision}}")],
            unit="short",
            stack=True,
            description="Images per second by decision.",
        )
    )
    g.add(
        timeseries(
            "Image failures",
            [(f'sum by (outcome) (rate(moderation_images_total{{outcome!="ok"}}[{RATE}]))', "{{outcome}}")],
            description="Images that could not be classified (404, timeout, not an image...), by cause.",
        )
    )
    g.add(
        timeseries(
            "Load",
            [
                ("sum(moderation_inflight_calls)", "calls in flight"),
                ("sum(moderation_queued_images)", "images waiting for a batch"),
            ],
        )
    )

    g.row("Audit")
    g.add(
        timeseries(
            "Audit queue and spill",
            [
                ("sum by (instance) (moderation_audit_queued)", "queued {{instance}}"),
                ("sum by (instance) (moderation_audit_spill_pending)", "spilled, waiting {{instance}}"),
            ],
            description="Records between a Classify call and the store. Spill > 0: the store is down.",
        )
    )
    g.add(
        timeseries(
            "Audit records",
            [
                (f"sum by (reason) (rate(moderation_audit_records_total[{RATE}]))", "written {{reason}}"),
                (f"sum(rate(moderation_audit_spilled_total[{RATE}]))", "spilled"),
                (f"sum(rate(moderation_audit_replayed_total[{RATE}]))", "replayed"),
                (f"sum(rate(moderation_audit_dropped_total[{RATE}]))", "dropped (must be 0)"),
            ],
            unit="short",
        )
    )
    g.add(
        timeseries(
            "Audit store",
            [
                ("min(moderation_audit_store_up)", "store up (min over replicas)"),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(moderation_audit_write_seconds_bucket[{RATE}])))",
                    "write p99 (s)",
                ),
            ],
        )
    )
    g.add(
        timeseries(
            "Review backlog",
            [("max by (reason) (moderation_audit_backlog)", "{{reason}}")],
            stack=True,
            description="Records waiting for an operator's verdict.",
        )
    )
    g.add(stat("Oldest record waiting for review", "max(moderation_audit_backlog_oldest_seconds)", "age", unit="s"))
    g.add(
        timeseries("Verdicts", [(f"sum by (outcome) (rate(moderation_audit_verdicts_total[{RATE}]))", "{{outcome}}")])
    )

    g.row("Drift")
    g.add(
        timeseries(
            "Miss rate among sampled PASSes, with its 95% interval",
            [
                (f"moderation:drift_miss_rate:max{{{WINDOW}}}", "v{{model_version}}"),
                (f"moderation:drift_miss_rate_lower:max{{{WINDOW}}}", "v{{model_version}} lower"),
                (f"moderation:drift_miss_rate_upper:max{{{WINDOW}}}", "v{{model_version}} upper"),
            ],
            unit="percentunit",
            thresholds=[("red", 0.02)],
            description="Share of operator-judged sampled PASSes judged not ham (Wilson interval).",
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Verdicts behind the miss rate",
            [
                (f"moderation:drift_miss_rate_verdicts:max{{{WINDOW}}}", "v{{model_version}}"),
                (f"max by (model_version) (moderation_drift_records{{{WINDOW}}})", "v{{model_version}} records"),
            ],
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Score PSI per class",
            [(f"moderation:drift_psi:max{{{WINDOW}}}", "v{{model_version}} {{class}}")],
            thresholds=[("orange", 0.1), ("red", 0.25)],
            description="Population stability index of each class's live scores against the version's "
            "training baseline: < 0.1 stable, > 0.25 shifted.",
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Decision and class mix PSI",
            [
                (f"moderation:drift_decision_mix_psi:max{{{WINDOW}}}", "v{{model_version}} decisions"),
                (
                    f"max by (model_version) (moderation_drift_class_mix_psi{{{WINDOW}}})",
                    "v{{model_version}} top classes",
                ),
            ],
            thresholds=[("red", 0.25)],
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Decision mix: live vs baseline",
            [
                (
                    f"max by (model_version, decision) (moderation_drift_decision_share{{{WINDOW}}})",
                    "v{{model_version}} {{decision}}",
                ),
                (
                    "max by (model_version, decision) (moderation_drift_decision_share_baseline)",
                    "v{{model_version}} {{decision}} baseline",
                ),
            ],
            unit="percentunit",
            max_=1,
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Top-class mix: live vs baseline",
            [
                (
                    f"max by (model_version, class) (moderation_drift_class_share{{{WINDOW}}})",
                    "v{{model_version}} {{class}}",
                ),
                (
                    "max by (model_version, class) (moderation_drift_class_share_baseline)",
                    "v{{model_version}} {{class}} baseline",
                ),
            ],
            unit="percentunit",
            max_=1,
        ),
        w=12,
    )

    return {
        "uid": "moderation-service",
        "title": "Image moderation",
        "description": "Traffic, latency, the audit loop and model drift of the moderation service.",
        "tags": ["moderation"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Prometheus",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "type": "custom",
                    "name": "window",
                    "label": "Drift window",
                    "query": "1h,1d,7d",
                    "current": {"text": "1d", "value": "1d"},
                    "options": [{"text": w, "value": w, "selected": w == "1d"} for w in ("1h", "1d", "7d")],
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": g.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
