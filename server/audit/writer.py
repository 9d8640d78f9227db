"""Audit writes off the request path: a bounded queue and one writer thread doing batched
inserts, so a slow database never slows a Classify call."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from server.audit.records import AuditRecord
from server.config import AuditConfig
from server.metrics import Metrics

log = logging.getLogger(__name__)


class AuditStore(Protocol):
    def write(self, records: list[AuditRecord]) -> None: ...

    def close(self) -> None: ...


def open_store(url: str) -> AuditStore:
    if url.startswith("sqlite:///"):
        from server.audit.sqlite_store import SQLiteAuditStore

        return SQLiteAuditStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"audit url {url!r}: only sqlite:///path is supported by this version")


class AuditWriter:
    def __init__(self, store: AuditStore, config: AuditConfig, metrics: Metrics):
        self._store = store
        self._config = config
        self._metrics = metrics
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(maxsize=config.queue_size)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, record: AuditRecord) -> None:
        try:
            self._queue.put_nowait(record)
            self._metrics.audit_queued.inc()
        except queue.Full:
            self._metrics.audit_dropped.inc()
            log.error("audit queue full (%d): record %s dropped", self._config.queue_size, record.record_id)

    def close(self) -> None:
        """Flushes everything queued, then stops."""
        self._queue.put(None)
        self._thread.join()
        self._store.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[AuditRecord] = []
            item = self._queue.get()
            flush_at = time.monotonic() + self._config.flush_interval_s
            while True:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self._config.batch_size:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, flush_at - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

    def _write(self, batch: list[AuditRecord]) -> None:
        started = time.perf_counter()
        try:
            self._store.write(batch)
        except Exception:
            log.exception("audit write of %d records failed; they are lost", len(batch))
            self._metrics.audit_dropped.inc(len(batch))
        else:
            self._metrics.audit_write_seconds.observe(time.perf_counter() - started)
            for record in batch:
                self._metrics.audit_records.labels(record.reason.value).inc()
        finally:
            self._metrics.audit_queued.dec(len(batch))
