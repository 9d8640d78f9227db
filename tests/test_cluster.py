"""Replication, proved on loopback: three real server processes (process runner, one model
worker each) behind Envoy, sharing one model repository and one PostgreSQL audit store, under
load from loadtest.generator with server.api.client's retry policy. A replica SIGKILLed mid-load,
a rolling restart and a model rollout must each cost zero failed calls; a broken model version
must not be switched to. Short runs with the fake model: the figures for the README come from
`python -m loadtest.chaos` (docs/deploy.md)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid

import psycopg
import pytest

from loadtest.chaos import InlineRequests, LoadSpec, kill_scenario, rolling_scenario, rollout_scenario, small_images
from loadtest.cluster import Cluster, ClusterConfig, _alive, down
from loadtest.fake_model import publish_fake_version
from model.repository import list_versions
from tests.audit_support import PG_BASE_URL

pytestmark = pytest.mark.e2e

PG = PG_BASE_URL  # make test starts a PostgreSQL there when none answers (.ci/postgres)
LOAD = LoadSpec(concurrency=4, channels=2, timeout_s=20.0)


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    repo = root / "models"
    publish_fake_version(repo)
    schema = f"cluster_test_{uuid.uuid4().hex[:8]}"
    audit_url = f"{PG}?schema={schema}" if postgres_available() else "sqlite"
    cluster = Cluster(
        ClusterConfig(
            root=root / "run",
            model_repository=repo,
            audit_url=audit_url,
            poll_interval_s=0.3,
            server_args=("--audit-flush-interval-s", "0.1"),
        )
    )
    cluster.start(3)
    try:
        yield cluster, repo, schema if audit_url != "sqlite" else None
    finally:
        cluster.stop()
        if audit_url != "sqlite":
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def images():
    return small_images(8)


@pytest.mark.postgres
def test_every_replica_serves_through_the_lb_into_one_audit_store(shared):
    cluster, _, schema = shared
    assert set(cluster.lb_hosts().values()) == {"healthy"} and len(cluster.lb_hosts()) == 3
    assert cluster.health(cluster.lb_target) == "SERVING"
    from loadtest.generator import run_load

    # Red images: the fake model flags them, so every call writes an audit record.
    from tests.conftest import encode

    report = asyncio.run(
        run_load(
            cluster.lb_target,
            requests_factory=InlineRequests([encode((250, 10, 10))]),
            concurrency=3,
            max_requests=60,
            duration_s=30,
        )
    )
    assert report.ok == report.requests == 60
    served = {
        i: sum(
            v
            for labels, v in cluster.metric(i, "moderation_calls_total")
            if labels.get("method", "").endswith("Classify")
        )
        for i in range(3)
    }
    assert all(n > 0 for n in served.values()), f"Envoy left a replica idle: {served}"
    if schema is None:
        pytest.skip(f"no PostgreSQL at {PG}: replicas wrote one SQLite file each")
    deadline = asyncio.run(_wait_rows(schema, 60))
    assert deadline >= 60


async def _wait_rows(schema: str, want: int, timeout_s: float = 15.0) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    rows = 0
    while loop.time() < end:
        with psycopg.connect(PG) as conn:
            try:
                rows = conn.execute(f'SELECT count(*) FROM "{schema}".audit_records').fetchone()[0]
            except psycopg.errors.UndefinedTable:
                rows = 0
        if rows >= want:
            break
        await asyncio.sleep(0.2)
    return rows


def test_replica_killed_under_load_costs_no_call(shared):
    cluster, _, _ = shared
    result = asyncio.run(
        kill_scenario(
            cluster, InlineRequests(images()), LOAD, warmup_s=0.5, steady_s=2.0, down_s=1.5, tail_s=1.5, victim=1
        )
    )
    assert result.requests > 200
    assert result.failed == 0, result.errors
    assert set(cluster.lb_hosts().values()) == {"healthy"}
    assert cluster.model_versions() == {0: "1", 1: "1", 2: "1"}


@pytest.mark.slow
def test_rolling_restart_under_load_costs_no_call(shared):
    cluster, _, _ = shared
    before = [p.pid for p in cluster.replicas]
    result = asyncio.run(
        rolling_scenario(cluster, InlineRequests(images()), LOAD, warmup_s=0.5, steady_s=1.5, tail_s=1.0, settle_s=0.2)
    )
    assert result.failed == 0, result.errors
    assert all(p.pid not in before for p in cluster.replicas), "every replica was restarted"
    assert [e["what"] for e in result.events].count("replica 2 ready") == 1


@pytest.mark.slow
def test_model_rollout_reaches_every_replica_and_a_broken_version_is_refused(shared):
    cluster, repo, _ = shared
    start = list_versions(repo, "moderation")[-1]
    load = LoadSpec(rate=40.0, concurrency=8, channels=2, timeout_s=20.0)
    try:
        result = asyncio.run(
            rollout_scenario(
                cluster,
                InlineRequests(images()),
                load,
                repo=repo,
                publish=lambda: int(publish_fake_version(repo).name),
                warmup_s=0.5,
                steady_s=2.0,
                tail_s=1.0,
                switch_timeout_s=60,
            )
        )
        assert result.failed == 0, result.errors
        assert result.checks["every_replica_switched"], result.extra
        assert result.extra["version"] == str(start + 1)
        assert result.checks["broken_not_switched_to"], result.extra
        assert result.extra["broken_version"] == str(start + 2)
        assert all(n >= 1 for n in result.extra["failed_loads"].values())
        assert cluster.model_versions() == {0: str(start + 1), 1: str(start + 1), 2: str(start + 1)}
        # Measured, reported, not asserted here: on a shared two-core CI machine three replicas
        # spawning new worker processes at once make this figure noisy (docs/deploy.md).
        print(
            f"rollout p99 before {result.latency_ms['before']['p99']:.1f} ms, during "
            f"{result.latency_ms['during']['p99']:.1f} ms"
        )
    finally:
        # A broken newest version would keep a restarted replica from ever serving.
        for version in list_versions(repo, "moderation"):
            if version > start + 1:
                shutil.rmtree(repo / "moderation" / str(version))


def test_down_stops_exactly_the_recorded_processes(tmp_path):
    repo = tmp_path / "models"
    publish_fake_version(repo)
    root = tmp_path / "run"
    cluster = Cluster(ClusterConfig(root=root, model_repository=repo, audit_url="sqlite", runner="thread"))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        cluster.start(1)
        procs = [p for p in (*cluster.replicas, cluster.lb) if p is not None]
        assert all(_alive(p) for p in procs)
        # A second `up` over a live cluster is refused rather than orphaning the first.
        with pytest.raises(RuntimeError, match="still running"):
            Cluster(ClusterConfig(root=root, model_repository=repo, audit_url="sqlite")).start(1)
        stopped = down(root)
        assert len(stopped) == 2
        for p in procs:
            cluster._reap(p)
            assert not _alive(p)
        assert bystander.poll() is None, "down() must not touch processes it did not start"
        assert not (root / "state.json").exists()
        assert down(root) == []
    finally:
        cluster.stop()
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()
