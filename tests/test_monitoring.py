"""The operators' view: Prometheus config, recording and alert rules (promtool check and promtool's
unit tests of every alert), the Grafana dashboard, and an end-to-end scrape: a real Prometheus on
loopback scraping a running server, asked through its HTTP API whether the series exist.

Needs Debian's `prometheus` package (promtool and the server); `make system-deps` installs it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import audit_pb2_grpc as apb_grpc
from moderation_api.v1 import moderation_pb2 as pb
from server.metrics import Metrics
from tests.conftest import encode
from tests.harness import ServerThread, make_config

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "moderation.json"
# Series Prometheus itself makes for every target.
BUILTIN = {"up"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's prometheus package (make system-deps)")
    return path


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def exported_series() -> set[str]:
    """Every series name the server's registry can produce."""
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
            "summary": ("_sum", "_count", ""),
        }[family.type]
        names.update(family.name + s for s in suffixes)
    return names


def recorded_series() -> set[str]:
    return {m for f in RULE_FILES for m in re.findall(r"^\s*- record:\s*(\S+)", f.read_text(), re.M)}


def series_in(expr: str) -> set[str]:
    # Identifiers that are not followed by "(" (functions) and are not label names / keywords.
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_groups = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    tokens = set(re.findall(r"(?<![a-zA-Z0-9_:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:])(?!\s*\()", without_groups))
    return {t for t in tokens if t.startswith("moderation") or t in BUILTIN}


def test_promtool_checks_the_config_and_the_rules():
    out = run(tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS" in out
    out = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert out.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_of_every_alert():
    out = run(tool("promtool"), "test", "rules", str(PROMETHEUS_DIR / "tests" / "alerts_test.yml"))
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname:\s*(\S+)", (PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text()))
    defined = {m for f in RULE_FILES for m in re.findall(r"^\s*- alert:\s*(\S+)", f.read_text(), re.M)}
    assert defined == tested, f"alerts without a unit test: {sorted(defined - tested)}"


def rule_exprs(text: str) -> list[str]:
    """The `expr:` values of a rule file, inline or block scalars."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not match:
            continue
        indent, rest = len(match.group(1)), match.group(2).strip()
        if rest not in ("|", ">", "|-", ">-"):
            out.append(rest)
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        out.append("\n".join(block))
    return out


def test_rules_name_only_series_that_exist():
    known = exported_series() | recorded_series() | BUILTIN
    for path in RULE_FILES:
        exprs = rule_exprs(path.read_text())
        assert len(exprs) == path.read_text().count("expr:")
        for expr in exprs:
            unknown = series_in(expr) - known
            assert not unknown, f"{path.name}: {expr.strip()!r} names {sorted(unknown)}"
    assert recorded_series() >= {"moderation:drift_psi:max", "moderation:call_seconds:p99_5m"}


def test_dashboard_is_generated_valid_and_names_only_real_series():
    done = subprocess.run(
        ["python", str(ROOT / "deploy" / "grafana" / "dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "window"}
    known = exported_series() | recorded_series()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = set()
    exprs = []
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"]["uid"] == "${datasource}"
        titles.add(panel["title"])
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            exprs.append(t["expr"])
            named = series_in(t["expr"])
            assert named, (panel["title"], t["expr"])
            assert named <= known, f"{panel['title']}: {t['expr']!r} names {sorted(named - known)}"
    # What the issue asks the dashboard to show.
    used = set().union(*(series_in(e) for e in exprs))
    for series in (
        "moderation_calls_total",
        "moderation_stage_seconds_bucket",
        "moderation_batch_size_bucket",
        "moderation_images_total",
        "moderation_audit_queued",
        "moderation_audit_backlog",
        "moderation:drift_miss_rate_lower:max",
        "moderation:drift_psi:max",
        "moderation_model_info",
    ):
        assert series in used, series
    # Panels do not overlap.
    cells = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.e2e
@pytest.mark.slow
def test_prometheus_scrapes_a_running_server_end_to_end(model_repo, tmp_path):
    prometheus = tool("prometheus")
    config = make_config(
        model_repo,
        tmp_path / "audit.sqlite3",
        server={"metrics_port": 0},
        audit={"sample_rate": 1.0, "drift_interval_s": 0.3, "drift_min_records": 1},
    )
    running = ServerThread(config).start()
    process = None
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 (closed in finally, after the process)
    try:
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{", ".join(json.dumps(str(f)) for f in RULE_FILES)}]
scrape_configs:
  - job_name: moderation
    static_configs:
      - targets: ["127.0.0.1:{running.service.metrics_port}"]
""")
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"

        # Traffic: passes (all sampled), blocks, a failure; then a verdict on a sampled PASS.
        with running.channel() as channel:
            stub = running.stub(channel)
            for i in range(6):
                stub.Classify(
                    pb.ClassifyRequest(
                        post_id=f"p{i}",
                        images=[
                            pb.ImageInput(id="ok", content=encode((0, 200, i), fmt="PNG")),
                            pb.ImageInput(id="bad", content=encode((255, i, 0), fmt="PNG")),
                            pb.ImageInput(id="broken", content=b"not an image"),
                        ],
                    ),
                    timeout=10,
                )
            running.service.audit.flush()
            audit = apb_grpc.AuditStub(channel)
            item = audit.NextForReview(
                apb.NextForReviewRequest(
                    reviewer_id="op", filter=apb.ReviewFilter(reasons=[apb.AUDIT_REASON_SAMPLED]), limit=1
                )
            ).items[0]
            audit.SubmitVerdicts(
                apb.SubmitVerdictsRequest(
                    operator_id="op", verdicts=[apb.Verdict(record_id=item.record_id, label="sexual")]
                )
            )

        wanted = {
            'moderation_calls_total{method="/moderation.v1.Moderation/Classify",code="OK"}': 6,
            'moderation_images_total{decision="BLOCK",outcome="ok"}': 6,
            "moderation_stage_seconds_count": None,
            "moderation_batch_size_count": None,
            'moderation_model_info{version="1"}': 1,
            'moderation_audit_records_total{reason="sampled"}': 6,
            "moderation_audit_dropped_total": 0,
            'moderation_audit_backlog{reason="flagged"}': 6,
            'moderation_drift_miss_rate{window="1h"}': 1.0,
            'moderation_drift_miss_rate_verdicts{window="1h"}': 1,
            'moderation_drift_records{window="1h"}': 12,
            'moderation:drift_miss_rate:max{window="1h"}': 1.0,
            "moderation:calls:rate5m": None,
            'up{job="moderation"}': 1,
        }
        deadline = time.monotonic() + 40
        missing = dict(wanted)
        while missing and time.monotonic() < deadline:
            for expr, value in list(missing.items()):
                try:
                    result = prometheus_query(base, expr)
                except OSError:
                    break  # not listening yet
                if result and (value is None or any(float(r["value"][1]) == value for r in result)):
                    del missing[expr]
            time.sleep(0.5)
        assert not missing, f"series missing from Prometheus: {missing}\n" + (tmp_path / "prometheus.log").read_text()

        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert rules and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        # Nothing is wrong with this server: no alert fires (the drift and miss-rate ones need a
        # day's window and 100 verdicts).
        firing = [a for a in prometheus_query(base, 'ALERTS{alertstate="firing"}')]
        assert not firing, firing
    finally:
        if process is not None:
            process.terminate()
            process.wait(20)
        log.close()
        running.stop()
