"""The audit writer against real databases that go away: PostgreSQL behind a TCP proxy the test
stops and starts (the shared server itself is never stopped), a SIGTERM-style close while the
database is down, a kill -9, and records the database refuses."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from moderation_api.v1 import moderation_pb2 as pb
from server.audit.records import AuditReason, AuditRecord
from server.audit.writer import AuditWriter, SpillFile, open_store
from server.config import AuditConfig
from server.metrics import Metrics
from tests.audit_support import PG_BASE_URL, TcpProxy, pg_schema, pg_url_fixture, with_schema  # noqa: F401
from tests.conftest import encode
from tests.harness import ServerThread, make_config

FAST = dict(flush_interval_s=0.02, batch_size=20, retry_initial_s=0.05, retry_max_s=0.2, write_timeout_s=2.0)


def make_record(i: int, **changes) -> AuditRecord:
    base = AuditRecord(
        request_id=f"req-{i}",
        post_id=f"post-{i}",
        image_id="a",
        url="",
        content_sha256=f"{i:064x}",
        scores={"ham": 0.1, "sexual": 0.9},
        top_class="sexual",
        decision="BLOCK",
        reason=AuditReason.FLAGGED,
        model_name="moderation",
        model_version="1",
        created_at=1_700_000_000.0 + i,
        record_id=f"rec-{i:05d}",
    )
    return dataclasses.replace(base, **changes)


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def pg_rows(schema: str) -> tuple[int, int]:
    with psycopg.connect(PG_BASE_URL) as conn:
        return conn.execute(f'SELECT COUNT(*), COUNT(DISTINCT record_id) FROM "{schema}".audit_records').fetchone()


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def proxied_pg():
    """(url through a started proxy, the proxy, schema name)."""
    target = urlsplit(PG_BASE_URL)
    with pg_schema() as schema:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
        try:
            yield with_schema(PG_BASE_URL, schema, "127.0.0.1", proxy.port), proxy, schema
        finally:
            proxy.stop()


@pytest.mark.postgres
def test_database_down_mid_traffic_loses_nothing_and_writes_nothing_twice(proxied_pg, tmp_path):
    url, proxy, schema = proxied_pg
    metrics = Metrics()
    writer = AuditWriter(
        open_store(url, timeout_s=2.0), AuditConfig(url=url, spill_path=str(tmp_path / "spill.jsonl"), **FAST), metrics
    )
    total = 600
    for i in range(total):
        writer.submit(make_record(i))
        if i == 200:
            writer.flush()
            proxy.stop()  # every open connection is cut; new ones are refused
        if i == 400:
            writer.flush()
            assert sample(metrics, "moderation_audit_spill_pending") > 0
            proxy.start()
        time.sleep(0.001)
    writer.flush()
    wait_for(lambda: sample(metrics, "moderation_audit_spill_pending") == 0, what="the spill to be replayed")
    writer.close()
    assert pg_rows(schema) == (total, total)
    spilled = sample(metrics, "moderation_audit_spilled_total")
    assert spilled >= 190  # everything submitted while the proxy was down, at least
    assert sample(metrics, "moderation_audit_replayed_total") == spilled
    assert sample(metrics, "moderation_audit_dropped_total") == 0
    assert sample(metrics, "moderation_audit_queued") == 0
    assert writer.spill.count() == 0


@pytest.mark.postgres
def test_close_while_the_database_is_down_spills_and_the_next_start_replays(proxied_pg, tmp_path):
    url, proxy, schema = proxied_pg
    config = AuditConfig(url=url, spill_path=str(tmp_path / "spill.jsonl"), **FAST)
    proxy.stop()
    metrics = Metrics()
    writer = AuditWriter(open_store(url, timeout_s=2.0), config, metrics)
    for i in range(50):
        writer.submit(make_record(i))
    writer.close()  # what SIGTERM does, through Service.stop()
    assert writer.spill.count() == 50
    assert sample(metrics, "moderation_audit_dropped_total") == 0

    proxy.start()
    metrics = Metrics()
    writer = AuditWriter(open_store(url, timeout_s=2.0), config, metrics)
    assert sample(metrics, "moderation_audit_spill_pending") == 50
    writer.submit(make_record(50))
    writer.flush()
    wait_for(lambda: sample(metrics, "moderation_audit_spill_pending") == 0, what="the replay at start")
    writer.close()
    assert pg_rows(schema) == (51, 51)
    assert sample(metrics, "moderation_audit_replayed_total") == 50


@pytest.mark.postgres
def test_a_record_the_database_refuses_is_set_aside_without_blocking_the_rest(pg_url, tmp_path):
    metrics = Metrics()
    spill = tmp_path / "spill.jsonl"
    writer = AuditWriter(open_store(pg_url), AuditConfig(url=pg_url, spill_path=str(spill), **FAST), metrics)
    writer.submit(make_record(1))
    writer.submit(make_record(2, post_id="nul\x00byte"))  # PostgreSQL text cannot hold NUL
    writer.submit(make_record(3))
    writer.close()
    store = open_store(pg_url)
    try:
        assert sorted(r.record_id for r in store.get(["rec-00001", "rec-00002", "rec-00003"])) == [
            "rec-00001",
            "rec-00003",
        ]
    finally:
        store.close()
    assert sample(metrics, "moderation_audit_dropped_total") == 1
    assert "rec-00002" in (tmp_path / "spill.jsonl.rejected").read_text()
    assert sample(metrics, "moderation_audit_spill_pending") == 0


def test_a_torn_spill_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    spill = SpillFile(tmp_path / "spill.jsonl")
    spill.append([make_record(1)])
    with open(spill.path, "a") as f:
        f.write('{"record_id": "torn by a cra')  # kill -9 in the middle of an append
    spill.append([make_record(2), make_record(3)])
    written = []
    replayed = spill.replay(written.extend, batch_size=2)
    assert [r.record_id for r in replayed] == ["rec-00001", "rec-00002", "rec-00003"]
    assert written == replayed
    assert spill.count() == 0


def test_kill_9_loses_at_most_the_last_flush_interval(tmp_path):
    """The bound docs/audit-loop.md states: after a kill -9, every record submitted more than
    one flush interval (plus one write) before the kill is in the database."""
    db = tmp_path / "audit.sqlite3"
    flush_interval = 0.2
    child = textwrap.dedent(f"""
        import sys, time
        from server.audit.writer import AuditWriter, open_store
        from server.config import AuditConfig
        from server.metrics import Metrics
        from tests.test_audit_writer import make_record
        url = "sqlite:///{db}"
        writer = AuditWriter(open_store(url), AuditConfig(url=url, flush_interval_s={flush_interval}), Metrics())
        i = 0
        while True:
            writer.submit(make_record(i))
            print(i, time.time(), flush=True)
            i += 1
            time.sleep(0.005)
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__))
    )
    submitted: list[tuple[int, float]] = []
    try:
        started = None
        for line in process.stdout:
            index, at = line.split()
            submitted.append((int(index), float(at)))
            started = started or time.time()
            if time.time() - started > 1.5:
                break
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(10)
    store = open_store(f"sqlite:///{db}")
    try:
        present = {r.record_id for r in store.get([f"rec-{i:05d}" for i, _ in submitted])}
    finally:
        store.close()
    # One flush interval to fill the batch, and a generous allowance for the write itself.
    safe = [i for i, at in submitted if at < killed_at - flush_interval - 0.3]
    assert len(safe) > 50
    missing = [i for i in safe if f"rec-{i:05d}" not in present]
    assert not missing, f"{len(missing)} records older than the flush interval were lost"


@pytest.mark.postgres
def test_server_keeps_serving_while_postgresql_is_away_and_loses_no_record(proxied_pg, model_repo, tmp_path):
    url, proxy, schema = proxied_pg
    config = make_config(model_repo, tmp_path / "unused.sqlite3")
    config = dataclasses.replace(
        config,
        audit=dataclasses.replace(
            config.audit,
            url=url,
            sample_rate=1.0,
            spill_path=str(tmp_path / "spill.jsonl"),
            drift_interval_s=0.2,
            **FAST,
        ),
    )
    running = ServerThread(config).start()
    calls = 30
    try:
        with running.channel() as channel:
            stub = running.stub(channel)
            for i in range(calls):
                if i == 10:
                    proxy.stop()
                if i == 20:
                    proxy.start()
                # Every image is recorded: sample_rate 1 records the PASSes, the rest are flagged.
                response = stub.Classify(
                    pb.ClassifyRequest(
                        post_id=f"p{i}",
                        images=[
                            pb.ImageInput(id="a", content=encode((i * 8, 100, 50), fmt="PNG")),
                            pb.ImageInput(id="b", content=encode((50, 100, i * 8), fmt="PNG")),
                        ],
                    ),
                    timeout=10,
                )
                assert len(response.results) == 2
                time.sleep(0.03)
        metrics = running.service.metrics
        wait_for(lambda: sample(metrics, "moderation_audit_spill_pending") == 0, what="the replay")
    finally:
        running.stop()
    assert pg_rows(schema) == (2 * calls, 2 * calls)
    assert sample(metrics, "moderation_audit_spilled_total") > 0
    assert sample(metrics, "moderation_audit_dropped_total") == 0


def test_writer_never_blocks_a_caller_on_a_locked_database(tmp_path):
    """A database that holds its lock (another process mid-transaction) fills nothing but the
    queue: submit() returns at once and the records arrive when the lock is released."""
    import sqlite3

    db = tmp_path / "audit.sqlite3"
    url = f"sqlite:///{db}"
    open_store(url).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    metrics = Metrics()
    writer = AuditWriter(
        open_store(url, timeout_s=0.2), AuditConfig(url=url, spill_path=str(tmp_path / "spill.jsonl"), **FAST), metrics
    )
    started = time.perf_counter()
    for i in range(100):
        writer.submit(make_record(i))
    assert time.perf_counter() - started < 0.1
    writer.flush()
    assert sample(metrics, "moderation_audit_spilled_total") == 100
    blocker.execute("ROLLBACK")
    blocker.close()
    wait_for(lambda: sample(metrics, "moderation_audit_spill_pending") == 0, what="the replay")
    writer.close()
    store = open_store(url)
    try:
        assert store.count() == 100
    finally:
        store.close()


def test_flush_returns_when_every_record_has_a_home(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    writer = AuditWriter(open_store(url), AuditConfig(url=url, **FAST), Metrics())
    done = threading.Event()
    for i in range(30):
        writer.submit(make_record(i))
    threading.Thread(target=lambda: (writer.flush(), done.set()), daemon=True).start()
    assert done.wait(10)
    assert writer.store.count() == 30
    writer.close()
