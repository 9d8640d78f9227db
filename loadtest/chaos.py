"""Failure and change under load, against a local cluster (loadtest.cluster): the figures
behind the README's replication section.

    python -m loadtest.chaos kill       # SIGKILL one replica's process group mid-run, restart it
    python -m loadtest.chaos rolling    # SIGTERM, restart, wait ready: one replica at a time
    python -m loadtest.chaos rollout    # publish version N+1, every replica switches; then a
                                        # broken N+2 that no replica may switch to
    python -m loadtest.chaos scaleout   # capacity with 1, 2 and 3 replicas

Each starts its own cluster (Envoy in front, --replicas replicas, one model worker each) on a
private copy of the model repository under --out, drives it with loadtest.generator.run_load
through the load balancer (or, with --via direct, client-side round_robin straight to the
replicas: the Kubernetes headless-Service path), using server.api.client's service config, whose
retry policy covers UNAVAILABLE. It writes <out>/<scenario>.json, .md and .png.

Reported: failed calls (the goal is zero), completed calls per second in bins (the dip after
the event as a share of the steady rate before it, and how long until the rate is back to 90%
of it), and p99 latency before, during and after the event. Closed loop (--concurrency) shows
capacity lost; open loop (--rate) shows latency at a fixed offered load, which is what the
rollout's "p99 during the switch within 2x steady state" is judged on."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from loadtest.cluster import Cluster, ClusterConfig
from loadtest.generator import LoadReport, latency_summary, machine_info, run_load
from model.repository import METADATA_FILE, ONNX_FILE, latest_version_dir, list_versions, publish_version
from moderation_api.v1 import moderation_pb2 as pb

SCENARIOS = ("kill", "rolling", "rollout", "scaleout")
RECOVERED_SHARE = 0.9  # throughput back to this share of the steady rate counts as recovered


# --- requests ---------------------------------------------------------------------------------


def small_images(count: int = 16, size: tuple[int, int] = (96, 72), seed: int = 0) -> list[bytes]:
    """Flat-colour JPEGs: cheap to decode, so a test's load measures the cluster, not Pillow."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class InlineRequests:
    """requests_factory for run_load; remembers when the first request was built, which is the
    run's time zero (the generator builds request 0 as its clock starts), so that events can
    be placed on the records' time axis."""

    def __init__(self, images: Sequence[bytes], images_per_request: int = 1, prefix: str = "chaos"):
        self.images = list(images)
        self.per_request = images_per_request
        self.prefix = prefix
        self.t0: float | None = None

    def __call__(self, seq: int) -> pb.ClassifyRequest:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        request = pb.ClassifyRequest(post_id=f"{self.prefix}-{seq}")
        for j in range(self.per_request):
            k = (seq * self.per_request + j) % len(self.images)
            request.images.add(id=f"{j}", content=self.images[k])
        return request

    def now(self) -> float:
        return time.perf_counter() - self.t0 if self.t0 is not None else 0.0


def loadtest_images(images_dir: Path | None = None) -> list[bytes]:
    """The load generator's realistic mix (phone photos, screenshots, a few large originals)."""
    from loadtest.images import DEFAULT_DIR, ensure_images
    from loadtest.scenarios import DEFAULT_MIX, image_picks

    images = ensure_images(images_dir or DEFAULT_DIR)
    return [images.data(f.name) for f in image_picks(images, DEFAULT_MIX, length=101)]


# --- model repository -------------------------------------------------------------------------


def copy_repository(source: Path, name: str, dest: Path) -> Path:
    """A private repository holding only the newest version of `source`, renumbered 1, so a
    scenario's publishes never touch the real one."""
    latest = latest_version_dir(source, name)
    if latest is None:
        raise FileNotFoundError(f"no version of {name!r} under {source}: `make model`, or use --fake-model")
    if dest.exists():
        shutil.rmtree(dest)
    publish_version(dest, name, lambda tmp, version: _copy_version(latest, tmp, version))
    return dest


def _copy_version(src: Path, tmp: Path, version: int, break_it: bool = False) -> None:
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    meta = json.loads((tmp / METADATA_FILE).read_text())
    meta["version"] = version
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if break_it:
        # Valid metadata over unloadable weights: what a truncated upload or a bad export
        # looks like. Every engine's file is spoiled, so no fallback can rescue it.
        for f in tmp.rglob("*"):
            if f.is_file() and f.name != METADATA_FILE:
                f.write_bytes(b"this is not a model\n")
        (tmp / ONNX_FILE).write_bytes(b"this is not a model\n")


def publish_copy(repo: Path, name: str, broken: bool = False) -> int:
    """Publishes the newest version again as N+1 (same weights, new number): a rollout as the
    servers see it. broken=True publishes one whose files cannot be loaded."""
    latest = latest_version_dir(repo, name)
    assert latest is not None
    good = [v for v in list_versions(repo, name) if not _is_broken(repo / name / str(v))]
    src = repo / name / str(good[-1]) if good else latest
    path = publish_version(repo, name, lambda tmp, version: _copy_version(src, tmp, version, break_it=broken))
    return int(path.name)


def _is_broken(version_dir: Path) -> bool:
    onnx = version_dir / ONNX_FILE
    return onnx.exists() and onnx.read_bytes().startswith(b"this is not a model")


# --- analysis ---------------------------------------------------------------------------------


@dataclass
class LoadSpec:
    concurrency: int = 8
    rate: float | None = None  # open loop at this rate instead of closed loop
    channels: int = 2
    timeout_s: float = 30.0
    via: str = "lb"  # "lb": through Envoy; "direct": client-side round_robin over the replicas

    def describe(self) -> str:
        load = f"open loop {self.rate:g} req/s" if self.rate else f"closed loop, {self.concurrency} in flight"
        return f"{load}, {self.channels} channels, via {self.via}"


@dataclass
class ChaosResult:
    scenario: str
    load: str
    replicas: int
    requests: int
    ok: int
    failed: int
    errors: dict[str, int]
    events: list[dict[str, Any]]  # {"t": seconds since load start, "what": ...}
    bin_s: float
    timeline: list[dict[str, float]]  # {"t", "ok_rps", "p99_ms"} per bin
    steady_rps: float | None  # OK completions/s before the first event
    dip_rps: float | None  # lowest bin from the first event to recovery
    dip_share: float | None  # dip_rps / steady_rps
    recovery_s: float | None  # first event -> throughput back to RECOVERED_SHARE of steady, sustained
    latency_ms: dict[str, dict[str, float]]  # "before" / "during" / "after" -> p50, p99, max...
    p99_ratio: float | None  # during / before
    checks: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine_info)
    report: LoadReport | None = field(default=None, repr=False)  # the raw run, for the plot

    def to_dict(self) -> dict[str, Any]:
        from loadtest.generator import _json_safe

        return _json_safe({k: v for k, v in asdict(self).items() if k != "report"})

    def markdown(self) -> str:
        lat = self.latency_ms

        def ms(window: str, key: str) -> str:
            v = lat.get(window, {}).get(key)
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"

        rows = [
            f"### {self.scenario}: {self.replicas} replicas, {self.load}",
            "",
            "| calls | failed | steady OK/s | dip OK/s (share) | recovery | p99 before | p99 during | p99 after |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.requests} | {self.failed} | {_f(self.steady_rps)} | {_f(self.dip_rps)} "
            f"({_pct(self.dip_share)}) | {_f(self.recovery_s, ' s')} | {ms('before', 'p99')} ms "
            f"| {ms('during', 'p99')} ms | {ms('after', 'p99')} ms |",
            "",
            "events: " + "; ".join(f"{e['t']:.1f} s {e['what']}" for e in self.events),
        ]
        if self.errors:
            rows.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())))
        restart = self.extra.get("restart")
        if restart:
            rows.append(
                f"restart: in rotation {restart['start_to_in_rotation_s']:.1f} s after start; "
                f"dip {_f(restart['dip_rps'])} OK/s ({_pct(restart['dip_share'])}), "
                f"recovery {_f(restart['recovery_s'], ' s')}"
            )
        if "switch_s" in self.extra:
            rows.append(
                f"rollout: {self.extra.get('from')} -> version {self.extra.get('version')}, replicas "
                f"switched {self.extra['switch_s']} s after publish; broken version "
                f"{self.extra.get('broken_version', '-')}: serving {self.extra.get('after_broken', '-')}, "
                f"failed loads {self.extra.get('failed_loads', '-')}"
            )
        if self.checks:
            rows.append("checks: " + ", ".join(f"{k}={v}" for k, v in self.checks.items()))
        return "\n".join(rows) + "\n"


def _f(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.1f}{unit}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def analyse(
    scenario: str,
    report: LoadReport,
    events: list[dict[str, Any]],
    *,
    replicas: int,
    load: LoadSpec,
    during: tuple[float, float] | None = None,
    bin_s: float = 0.5,
) -> ChaosResult:
    """`during` is the disturbed window [start, end) in seconds since load start; default: the
    first event to the last one."""
    records = report.records
    failed = [r for r in records if r.code != "OK"]
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.code] = errors.get(r.code, 0) + 1
    end = max((r.end_s for r in records), default=0.0)
    n = max(1, math.ceil(end / bin_s))
    ok_done = [0] * n
    started: list[list[float]] = [[] for _ in range(n)]
    for r in records:
        if r.code == "OK":
            ok_done[min(n - 1, int(r.end_s / bin_s))] += 1
            started[min(n - 1, int(r.start_s / bin_s))].append(r.latency_s)
    timeline = [
        {"t": i * bin_s, "ok_rps": ok_done[i] / bin_s, "p99_ms": latency_summary(started[i])["p99"]} for i in range(n)
    ]
    first = events[0]["t"] if events else end
    last = events[-1]["t"] if events else end
    d0, d1 = during if during else (first, last)
    warm = report.warmup_s
    # The last bin is partial (the run stopped inside it) and would read as a dip.
    full = n - 1
    steady_bins = [ok_done[i] / bin_s for i in range(full) if warm <= i * bin_s and (i + 1) * bin_s <= first]
    steady = sum(steady_bins) / len(steady_bins) if steady_bins else None
    dip = recovery = None
    if steady and events:
        dip, recovery = dip_and_recovery([c / bin_s for c in ok_done[:full]], bin_s, d0, d1, steady)

    def lat(lo: float, hi: float) -> dict[str, float]:
        return latency_summary([r.latency_s for r in records if r.code == "OK" and lo <= r.start_s < hi])

    last_start = max((r.start_s for r in records), default=0.0)
    latency = {"before": lat(warm, d0), "during": lat(d0, d1), "after": lat(d1, last_start + 1)}
    before, dur = latency["before"]["p99"], latency["during"]["p99"]
    ratio = dur / before if before and not math.isnan(before) and not math.isnan(dur) else None
    return ChaosResult(
        scenario=scenario,
        load=load.describe(),
        replicas=replicas,
        requests=len(records),
        ok=len(records) - len(failed),
        failed=len(failed),
        errors=errors,
        events=events,
        bin_s=bin_s,
        timeline=timeline,
        steady_rps=steady,
        dip_rps=dip,
        dip_share=(dip / steady) if dip is not None and steady else None,
        recovery_s=recovery,
        latency_ms=latency,
        p99_ratio=ratio,
        report=report,
    )


def dip_and_recovery(
    rates: Sequence[float], bin_s: float, start: float, end: float, steady: float
) -> tuple[float | None, float | None]:
    """The lowest rate in the bins overlapping [start, end], and the seconds from `start` until
    two bins in a row after that low point are back at RECOVERED_SHARE of `steady` (None: not
    within the run)."""
    k0, k1 = int(start / bin_s), min(len(rates), int(end / bin_s) + 1)
    if k0 >= k1:
        return None, None
    low = min(range(k0, k1), key=lambda k: rates[k])
    floor = RECOVERED_SHARE * steady
    for k in range(low, len(rates) - 1):
        if rates[k] >= floor and rates[k + 1] >= floor:
            return rates[low], max(0.0, k * bin_s - start)
    return rates[low], None


# --- running load beside an action ------------------------------------------------------------


def _target(cluster: Cluster, load: LoadSpec) -> str:
    if load.via == "direct":
        return "ipv4:" + ",".join(cluster.replica_target(i) for i in range(len(cluster.ports)))
    return cluster.lb_target


async def with_load(
    cluster: Cluster,
    factory: InlineRequests,
    load: LoadSpec,
    action: Callable[[Callable[[str], None]], Any],
    *,
    warmup_s: float,
    tail_s: float,
    max_s: float = 600.0,
) -> tuple[LoadReport, list[dict[str, Any]]]:
    """Runs load until `action` (a blocking function, run in a thread, given a `mark(what)` that
    timestamps an event) has returned and tail_s more seconds have passed."""
    events: list[dict[str, Any]] = []
    stop = asyncio.Event()

    def mark(what: str) -> None:
        events.append({"t": round(factory.now(), 3), "what": what})

    load_task = asyncio.create_task(
        run_load(
            _target(cluster, load),
            requests_factory=factory,
            concurrency=load.concurrency,
            channels=load.channels,
            rate=load.rate,
            duration_s=max_s,
            warmup_s=warmup_s,
            timeout_s=load.timeout_s,
            stop=stop,
            max_outstanding=max(64, 8 * load.concurrency),
        )
    )
    while factory.t0 is None and not load_task.done():
        await asyncio.sleep(0.01)
    try:
        await asyncio.sleep(warmup_s)
        await asyncio.to_thread(action, mark)
        await asyncio.sleep(tail_s)
    finally:
        stop.set()
    return await load_task, events


# --- scenarios --------------------------------------------------------------------------------


async def kill_scenario(
    cluster: Cluster,
    factory: InlineRequests,
    load: LoadSpec,
    *,
    warmup_s: float = 2.0,
    steady_s: float = 4.0,
    down_s: float = 3.0,
    tail_s: float = 4.0,
    victim: int = 0,
) -> ChaosResult:
    """SIGKILL one replica's process group (server and model workers) under load, leave it down
    for down_s, start it again and wait until it is back in rotation."""

    def action(mark: Callable[[str], None]) -> None:
        time.sleep(steady_s)
        mark(f"kill -9 replica {victim}")
        cluster.kill_replica(victim, signal.SIGKILL)
        cluster.wait_replica_exit(victim, 10)
        time.sleep(down_s)
        mark(f"restart replica {victim}")
        cluster.restart_replica(victim)
        mark(f"replica {victim} back in rotation")

    report, events = await with_load(cluster, factory, load, action, warmup_s=warmup_s, tail_s=tail_s)
    kill_t, restart_t, back_t = (e["t"] for e in events)
    # The kill's own dip and recovery; the restart's cost is reported apart, because on one
    # machine a replica starting up takes CPU from the others, which a real cluster would not.
    result = analyse("kill", report, events, replicas=len(cluster.ports), load=load, during=(kill_t, restart_t))
    if result.steady_rps:
        rates = [row["ok_rps"] for row in result.timeline[:-1]]
        dip, rec = dip_and_recovery(rates, result.bin_s, restart_t, back_t, result.steady_rps)
        result.extra["restart"] = {
            "dip_rps": dip,
            "dip_share": dip / result.steady_rps if dip else None,
            "recovery_s": rec,
            "start_to_in_rotation_s": round(back_t - restart_t, 2),
        }
    result.checks["zero_failed"] = result.failed == 0
    return result


async def rolling_scenario(
    cluster: Cluster,
    factory: InlineRequests,
    load: LoadSpec,
    *,
    warmup_s: float = 2.0,
    steady_s: float = 4.0,
    tail_s: float = 4.0,
    settle_s: float = 0.5,
) -> ChaosResult:
    def action(mark: Callable[[str], None]) -> None:
        time.sleep(steady_s)
        cluster.rolling_restart(settle_s=settle_s, on_step=lambda i, step: mark(f"replica {i} {step}"))

    report, events = await with_load(cluster, factory, load, action, warmup_s=warmup_s, tail_s=tail_s)
    result = analyse("rolling", report, events, replicas=len(cluster.ports), load=load)
    result.checks["zero_failed"] = result.failed == 0
    return result


async def rollout_scenario(
    cluster: Cluster,
    factory: InlineRequests,
    load: LoadSpec,
    *,
    repo: Path,
    name: str = "moderation",
    publish: Callable[[], int] | None = None,
    publish_broken: Callable[[], int] | None = None,
    warmup_s: float = 2.0,
    steady_s: float = 6.0,
    tail_s: float = 4.0,
    switch_timeout_s: float = 120.0,
    broken: bool = True,
) -> ChaosResult:
    """Publishes version N+1 into the shared repository under load and waits until every
    replica reports it in moderation_model_info; then (broken=True) publishes an unloadable
    N+2 and waits until every replica has counted a failed load, checking that each still
    serves N+1. The disturbed window is publish -> last replica switched (+1 s: the old
    version's workers are closed after the swap)."""
    publish = publish or (lambda: publish_copy(repo, name))
    publish_broken = publish_broken or (lambda: publish_copy(repo, name, broken=True))
    state: dict[str, Any] = {}

    def wait_for(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + switch_timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what} within {switch_timeout_s:.0f}s: versions {cluster.model_versions()}, "
                    f"failed loads {cluster.failed_loads()}"
                )
            time.sleep(0.05)

    def action(mark: Callable[[str], None]) -> None:
        replicas = range(len(cluster.ports))
        state["from"] = cluster.model_versions()
        time.sleep(steady_s)
        mark("publish")
        version = publish()
        state["version"] = str(version)
        switched: dict[int, float] = {}

        def all_switched() -> bool:
            for i, v in cluster.model_versions().items():
                if v == str(version) and i not in switched:
                    switched[i] = round(time.monotonic(), 3)
            return len(switched) == len(replicas)

        t_publish = time.monotonic()
        wait_for(all_switched, f"not every replica switched to version {version}")
        state["switch_s"] = {i: round(t - t_publish, 2) for i, t in sorted(switched.items())}
        mark(f"every replica serves version {version}")
        time.sleep(1.0)
        mark("switch settled")
        if not broken:
            return
        time.sleep(tail_s / 2)
        failed_before = cluster.failed_loads()
        mark("publish broken version")
        state["broken_version"] = str(publish_broken())
        wait_for(
            lambda: all(cluster.failed_loads().get(i, 0) > failed_before.get(i, 0) for i in replicas),
            "not every replica reported the broken version's failed load",
        )
        mark("every replica refused the broken version")
        state["after_broken"] = cluster.model_versions()
        state["failed_loads"] = cluster.failed_loads()

    report, events = await with_load(cluster, factory, load, action, warmup_s=warmup_s, tail_s=tail_s)
    t = {e["what"]: e["t"] for e in events}
    settled = t.get("switch settled", events[-1]["t"])
    result = analyse("rollout", report, events, replicas=len(cluster.ports), load=load, during=(t["publish"], settled))
    # "after" is the good version's steady state, before the broken publish.
    if "publish broken version" in t:
        broken_at = t["publish broken version"]
        result.latency_ms["after"] = latency_summary(
            [r.latency_s for r in report.records if r.code == "OK" and settled <= r.start_s < broken_at]
        )
    result.extra.update(state)
    version = state.get("version")
    result.checks["zero_failed"] = result.failed == 0
    result.checks["every_replica_switched"] = bool(version) and len(state.get("switch_s", {})) == len(cluster.ports)
    if result.p99_ratio is not None:
        result.checks["p99_during_within_2x"] = result.p99_ratio <= 2.0
    if broken:
        result.checks["broken_not_switched_to"] = all(v == version for v in state.get("after_broken", {}).values())
    return result


async def scaleout_scenario(
    make_cluster: Callable[[int], Cluster],
    factory_fn: Callable[[], InlineRequests],
    load: LoadSpec,
    *,
    sizes: Sequence[int] = (1, 2, 3),
    warmup_s: float = 3.0,
    duration_s: float = 15.0,
    direct_single: bool = True,
) -> dict[str, Any]:
    """Closed-loop capacity with each number of replicas, through the LB; plus one replica
    called directly, to show what the LB hop costs."""
    rows = []
    runs = [(n, "lb") for n in sizes]
    if direct_single:
        runs.insert(0, (1, "direct"))
    for n, via in runs:
        cluster = await asyncio.to_thread(make_cluster, n)
        try:
            target = cluster.replica_target(0) if via == "direct" else cluster.lb_target
            report = await run_load(
                target,
                requests_factory=factory_fn(),
                concurrency=load.concurrency,
                channels=load.channels,
                duration_s=duration_s,
                warmup_s=warmup_s,
                timeout_s=load.timeout_s,
            )
        finally:
            await asyncio.to_thread(cluster.stop)
        rows.append(
            {
                "replicas": n,
                "via": "direct (no LB)" if via == "direct" else "Envoy",
                "ok_rps": report.ok_rps,
                "images_per_s": report.images_per_s,
                "p50_ms": report.latency_ms["p50"],
                "p99_ms": report.latency_ms["p99"],
                "failed": report.requests - report.ok,
                "requests": report.requests,
            }
        )
    return {
        "scenario": "scaleout",
        "load": load.describe(),
        "duration_s": duration_s,
        "rows": rows,
        "cores": len(os.sched_getaffinity(0)),
        "machine": machine_info(),
    }


def scaleout_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"### scaleout: {result['load']}, {result['duration_s']:g} s per row, "
        f"{result['cores']} cores shared by everything",
        "",
        "| replicas | via | OK calls/s | images/s | p50 ms | p99 ms | failed |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['replicas']} | {r['via']} | {r['ok_rps']:.1f} | {r['images_per_s']:.1f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failed']} |"
        )
    return "\n".join(lines) + "\n"


# --- the command ------------------------------------------------------------------------------


def write_outputs(
    out: Path, name: str, result: ChaosResult | dict[str, Any], report: LoadReport | None = None, command: str = ""
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_dict() if isinstance(result, ChaosResult) else result
    data = {**data, "command": command}
    md = result.markdown() if isinstance(result, ChaosResult) else scaleout_markdown(result)
    if command:
        md += f"\n`{command}`, {time.strftime('%Y-%m-%d')}, {machine_info()['cpu']}, {os.cpu_count()} cores\n"
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(data, indent=1) + "\n")
    paths[1].write_text(md)
    if report is not None:
        paths.append(report.write_plot(out / f"{name}.png", title=f"{name}: {result.load}"))
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("scenario", choices=SCENARIOS)
    add("--replicas", type=int, default=3)
    add("--models", type=Path, default=Path("models"), help="repository whose newest version is served (copied)")
    add("--model-name", default="moderation")
    add("--fake-model", action="store_true", help="serve loadtest/fake_model.py's tiny ONNX model instead")
    add("--audit-url", default="sqlite", help="sqlite (per replica), own (private PostgreSQL) or postgresql://...")
    add("--workers", type=int, default=1, help="model workers per replica")
    add("--runner", default="process")
    add("--concurrency", type=int, default=8, help="closed loop: calls in flight (default %(default)s)")
    add("--rate", type=float, default=None, help="open loop at this rate instead (rollout default: 20 req/s)")
    add("--channels", type=int, default=2)
    add("--via", choices=("lb", "direct"), default="lb")
    add(
        "--images",
        choices=("loadtest", "small"),
        default="loadtest",
        help="loadtest: the load generator's photo mix; small: flat-colour thumbnails",
    )
    add("--images-per-request", type=int, default=1)
    add("--steady", type=float, default=6.0, help="seconds of steady load before the event")
    add("--tail", type=float, default=5.0, help="seconds of load after it")
    add("--duration", type=float, default=15.0, help="scaleout: measured seconds per size")
    add("--sizes", default="1,2,3", help="scaleout: replica counts")
    add("--out", type=Path, default=Path("var/chaos"))
    add("--keep", action="store_true", help="leave the cluster running afterwards (not for scaleout)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m loadtest.chaos " + " ".join(sys.argv[1:] if argv is None else argv)
    work = args.out / "work"
    repo = work / "models"
    if args.fake_model:
        from loadtest.fake_model import publish_fake_version

        shutil.rmtree(repo, ignore_errors=True)
        publish_fake_version(repo, args.model_name)
    else:
        copy_repository(args.models, args.model_name, repo)
    images = small_images() if args.images == "small" else loadtest_images()
    rate = args.rate if args.rate is not None else (20.0 if args.scenario == "rollout" else None)
    load = LoadSpec(concurrency=args.concurrency, rate=rate, channels=args.channels, via=args.via)

    def make_cluster(n: int) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix=f"cluster-{n}-", dir=work))
        return Cluster(
            ClusterConfig(
                root=root,
                model_repository=repo,
                model_name=args.model_name,
                audit_url=args.audit_url,
                workers=args.workers,
                runner=args.runner,
            )
        ).start(n)

    def factory() -> InlineRequests:
        return InlineRequests(images, args.images_per_request, prefix=f"chaos-{args.scenario}")

    if args.scenario == "scaleout":
        sizes = tuple(int(s) for s in args.sizes.split(","))
        result = asyncio.run(scaleout_scenario(make_cluster, factory, load, sizes=sizes, duration_s=args.duration))
        print(scaleout_markdown(result))
        for p in write_outputs(args.out, "scaleout", result, command=command):
            print(f"wrote {p}")
        return 0

    cluster = make_cluster(args.replicas)
    print(
        f"cluster: {cluster.lb_target} -> {[cluster.replica_target(i) for i in range(args.replicas)]}", file=sys.stderr
    )
    scenario = {"kill": kill_scenario, "rolling": rolling_scenario, "rollout": rollout_scenario}[args.scenario]
    kwargs: dict[str, Any] = {"steady_s": args.steady, "tail_s": args.tail}
    if args.scenario == "rollout":
        kwargs.update(repo=repo, name=args.model_name)
    try:
        chaos = asyncio.run(scenario(cluster, factory(), load, **kwargs))
    finally:
        if not args.keep:
            cluster.stop()
    print(chaos.markdown())
    for p in write_outputs(args.out, args.scenario, chaos, chaos.report, command=command):
        print(f"wrote {p}")
    return 0 if all(v is not False for v in chaos.checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
