"""Audit writes off the request path: a bounded queue and one writer thread doing batched
inserts, so a slow database never slows a Classify call.

When the store fails, batches go to a local append-only spill file (fsynced) instead, and the
writer keeps retrying the store with backoff; once it answers, the file is replayed and
emptied. Writes are idempotent on record_id, so a replay that is cut short and repeated, or two
processes replaying the same file, never make a second row. What a crash can lose is what sits
in the in-memory queue: see docs/audit-loop.md."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from server.audit.records import AuditReason, AuditRecord
from server.config import AuditConfig
from server.errors import AuditStoreUnavailable
from server.metrics import Metrics

log = logging.getLogger(__name__)


class AuditStore(Protocol):
    """What the writer needs; server/audit/sql_store.py's stores offer much more."""

    def write(self, records: Sequence[AuditRecord]) -> None: ...

    def close(self) -> None: ...


def open_store(url: str, timeout_s: float = 10.0):
    """sqlite:///relative/path, sqlite:////absolute/path, or postgresql://user@host:port/db[?schema=s]."""
    if url.startswith("sqlite:///"):
        from server.audit.sqlite_store import SQLiteAuditStore

        return SQLiteAuditStore(url.removeprefix("sqlite:///"), busy_timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        from server.audit.postgres_store import PostgresAuditStore

        return PostgresAuditStore(url, connect_timeout_s=min(timeout_s, 5.0), statement_timeout_s=timeout_s)
    raise ValueError(f"audit url {url!r}: use sqlite:///path or postgresql://user@host:port/database")


def default_spill_path(url: str) -> str:
    # Beside the SQLite file, so each database has its own; under var/ for a shared database.
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///") + ".spill.jsonl"
    return "var/audit-spill.jsonl"


def record_to_json(record: AuditRecord) -> str:
    data = dataclasses.asdict(record)
    data["reason"] = record.reason.value
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def record_from_json(text: str) -> AuditRecord:
    data = json.loads(text)
    data["reason"] = AuditReason(data["reason"])
    return AuditRecord(**data)


class SpillFile:
    """An append-only JSONL file of records the store did not take. Appends and replays hold
    an exclusive lock on `<path>.lock`, so processes sharing the file never lose each other's
    appends to a replay's truncation."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, records: Sequence[AuditRecord]) -> None:
        text = "".join(record_to_json(r) + "\n" for r in records)
        with self._locked(), open(self.path, "ab") as f:
            # A crash mid-append leaves a torn last line; start on a fresh line so the next
            # record is not glued to it.
            if f.tell() > 0:
                with open(self.path, "rb") as tail:
                    tail.seek(-1, os.SEEK_END)
                    if tail.read(1) != b"\n":
                        text = "\n" + text
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def replay(self, write: Callable[[list[AuditRecord]], None], batch_size: int) -> list[AuditRecord]:
        """Writes every record in the file through `write`, then empties the file. If `write`
        raises, the file is left whole (a later replay rewrites what this one wrote, harmlessly).
        Returns the records replayed."""
        with self._locked():
            try:
                lines = self.path.read_bytes().splitlines()
            except FileNotFoundError:
                return []
            records = []
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(record_from_json(line.decode()))
                except (ValueError, TypeError, KeyError) as exc:
                    # Only a line torn by a crash mid-append can be unreadable.
                    log.error("spill file %s line %d unreadable, skipped: %s", self.path, number, exc)
            for start in range(0, len(records), batch_size):
                write(records[start : start + batch_size])
            with open(self.path, "r+b") as f:
                f.truncate(0)
                os.fsync(f.fileno())
            return records


_IDLE = object()


class AuditWriter:
    def __init__(self, store: AuditStore, config: AuditConfig, metrics: Metrics):
        self._store = store
        self._config = config
        self._metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.spill = SpillFile(config.spill_path or default_spill_path(config.url))
        self.rejected_path = self.spill.path.with_name(self.spill.path.name + ".rejected")
        self._spill_pending = self.spill.count()
        self._retry_delay = config.retry_initial_s
        self._retry_at = time.monotonic()  # a spill left by the last run is replayed at once
        metrics.audit_spill_pending.set(self._spill_pending)
        if self._spill_pending:
            log.warning(
                "audit spill file %s holds %d records from an earlier run; replaying",
                self.spill.path,
                self._spill_pending,
            )
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    @property
    def store(self) -> AuditStore:
        return self._store

    def submit(self, record: AuditRecord) -> None:
        """Never blocks: a full queue drops the record and counts it."""
        try:
            self._queue.put_nowait(record)
            self._metrics.audit_queued.inc()
        except queue.Full:
            self._metrics.audit_dropped.inc()
            log.error("audit queue full (%d): record %s dropped", self._config.queue_size, record.record_id)

    def flush(self) -> None:
        """Returns once every record submitted so far is in the store or the spill file."""
        self._queue.join()

    def close(self) -> None:
        """Flushes everything queued (to the store, or to the spill file if the store is down),
        makes one last attempt to replay the spill file, then stops."""
        self._queue.put(None)
        self._thread.join()
        self._store.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            timeout = max(0.0, self._retry_at - time.monotonic()) if self._spill_pending else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = _IDLE
            batch: list[AuditRecord] = []
            flush_at = time.monotonic() + self._config.flush_interval_s
            taken = 0 if item is _IDLE else 1
            while item is not _IDLE:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self._config.batch_size:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, flush_at - time.monotonic()))
                    taken += 1
                except queue.Empty:
                    break
            try:
                if self._spill_pending and (stopping or time.monotonic() >= self._retry_at):
                    self._replay()
                if batch:
                    self._write(batch)
            except Exception:
                # Never let the writer thread die: records keep arriving.
                log.exception("audit writer: unexpected error; %d records lost", len(batch))
                self._metrics.audit_dropped.inc(len(batch))
            finally:
                self._metrics.audit_queued.dec(len(batch))
                for _ in range(taken):
                    self._queue.task_done()

    def _write_through(self, records: list[AuditRecord]) -> None:
        """Writes to the store. AuditStoreUnavailable propagates (the caller spills); any other
        failure means the data itself is refused (say, a NUL byte PostgreSQL will not store),
        so the batch is retried one record at a time and the refused ones are set aside in
        `<spill>.rejected` and counted as dropped, instead of blocking the spill forever."""
        try:
            self._store.write(records)
        except AuditStoreUnavailable:
            raise
        except Exception as exc:
            log.error("audit store refused a batch of %d records (%s); retrying one by one", len(records), exc)
            for record in records:
                try:
                    self._store.write([record])
                except AuditStoreUnavailable:
                    raise
                except Exception as one:
                    self._reject(record, one)

    def _reject(self, record: AuditRecord, exc: Exception) -> None:
        log.error(
            "audit record %s refused by the store, set aside in %s: %s", record.record_id, self.rejected_path, exc
        )
        self._metrics.audit_dropped.inc()
        try:
            with open(self.rejected_path, "a") as f:
                f.write(record_to_json(record) + "\n")
        except OSError:
            log.exception("cannot write %s", self.rejected_path)

    def _write(self, batch: list[AuditRecord]) -> None:
        if not self._spill_pending:
            started = time.perf_counter()
            try:
                self._write_through(batch)
            except AuditStoreUnavailable as exc:
                log.error(
                    "audit write of %d records failed, spilling to %s until the store is back: %s",
                    len(batch),
                    self.spill.path,
                    exc,
                )
                self._metrics.audit_store_up.set(0)
                self._retry_delay = self._config.retry_initial_s
                self._retry_at = time.monotonic() + self._retry_delay
            else:
                self._metrics.audit_store_up.set(1)
                self._metrics.audit_write_seconds.observe(time.perf_counter() - started)
                self._count_written(batch)
                return
        try:
            self.spill.append(batch)
        except OSError as exc:
            log.error("audit spill to %s failed: %d records lost: %s", self.spill.path, len(batch), exc)
            self._metrics.audit_dropped.inc(len(batch))
            return
        self._spill_pending += len(batch)
        self._metrics.audit_spilled.inc(len(batch))
        self._metrics.audit_spill_pending.set(self._spill_pending)

    def _replay(self) -> None:
        started = time.perf_counter()
        try:
            records = self.spill.replay(self._write_through, self._config.batch_size)
        except (AuditStoreUnavailable, OSError) as exc:
            self._metrics.audit_store_up.set(0)
            self._retry_delay = min(self._config.retry_max_s, self._retry_delay * 2)
            self._retry_at = time.monotonic() + self._retry_delay
            log.warning(
                "audit store still unavailable (%s); %d records spilled, next try in %.1fs",
                exc,
                self._spill_pending,
                self._retry_delay,
            )
            return
        log.info(
            "audit store is back: replayed %d spilled records in %.2fs", len(records), time.perf_counter() - started
        )
        self._metrics.audit_store_up.set(1)
        self._metrics.audit_replayed.inc(len(records))
        self._count_written(records)
        self._spill_pending = 0
        self._metrics.audit_spill_pending.set(0)
        self._retry_delay = self._config.retry_initial_s

    def _count_written(self, records: Sequence[AuditRecord]) -> None:
        counts: dict[str, int] = {}
        for record in records:
            counts[record.reason.value] = counts.get(record.reason.value, 0) + 1
        for reason, n in counts.items():
            self._metrics.audit_records.labels(reason).inc(n)
