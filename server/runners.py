"""Runners: where batches are decoded and scored, `slots` batches at a time.

- ProcessRunner (default): one worker process per slot, each with its own single-threaded
  engine. Python's GIL caps one process; decode + inference dominate the CPU cost, so moving
  them to workers lets every core work, while one front process keeps the gRPC connections
  and hands out work per batch, not per connection (a client with a single HTTP/2 channel
  still uses every worker).
- ThreadRunner: the same work on threads of the server process with one shared engine;
  Pillow and ONNX Runtime release the GIL for most of it. Fewer processes, less memory."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

import numpy as np

from server.config import ModelConfig
from server.decode import DecodeConfig
from server.engines import open_engine
from server.errors import ImageErrorCode
from server.inference import Item, ItemResult, process_batch

log = logging.getLogger(__name__)


class Runner(Protocol):
    slots: int
    engine_name: str

    def run(self, items: list[Item]) -> list[ItemResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunnerSpec:
    """What a runner needs to build its engines; plain data so it crosses into worker processes."""

    version_dir: str
    model: ModelConfig
    decode: DecodeConfig
    warmup_batch: int


def _load(spec: RunnerSpec, threads: int):
    from model.repository import load_metadata

    metadata = load_metadata(spec.version_dir)
    engine = open_engine(metadata, Path(spec.version_dir), spec.model, threads)
    size = (metadata.input_size, metadata.input_size)
    for n in sorted({1, spec.warmup_batch}):
        scores = engine.predict(np.zeros((n, *size, 3), dtype=np.uint8))
        if scores.shape != (n, len(metadata.class_names)):
            raise ValueError(f"{spec.version_dir}: engine returned shape {scores.shape} for {n} images, "
                             f"expected ({n}, {len(metadata.class_names)})")
    return engine, size


def worker_count(config: ModelConfig) -> int:
    return config.workers or len(os.sched_getaffinity(0))


class ThreadRunner:
    def __init__(self, spec: RunnerSpec):
        self.slots = worker_count(spec.model)
        self._spec = spec
        self._engine, self._size = _load(spec, spec.model.threads * self.slots)
        self.engine_name = self._engine.name

    def run(self, items: list[Item]) -> list[ItemResult]:
        return process_batch(self._engine, items, self._size, self._spec.decode)

    def close(self) -> None:
        self._engine.close()


def _worker_main(conn: Connection, spec: RunnerSpec) -> None:
    try:
        engine, size = _load(spec, spec.model.threads)
    except BaseException as exc:  # report why, instead of a bare EOF in the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", engine.name))
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if items is None:
            return
        conn.send(process_batch(engine, items, size, spec.decode))


class _Worker:
    def __init__(self, ctx, spec: RunnerSpec, index: int):
        self.index = index
        self.batches = 0
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, spec), name=f"moderation-worker-{index}",
                                   daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> str:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"worker did not load its model within {timeout:.0f}s")
        try:
            kind, detail = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"worker exited during start-up (exit code {self.process.exitcode})") from None
        if kind != "ready":
            raise RuntimeError(f"worker failed to load the model: {detail}")
        return detail

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class ProcessRunner:
    def __init__(self, spec: RunnerSpec, start_timeout_s: float = 120.0):
        self.slots = worker_count(spec.model)
        self._spec = spec
        self._timeout = start_timeout_s
        # spawn, not fork: the parent holds gRPC and asyncio state that must not be copied.
        self._ctx = multiprocessing.get_context("spawn")
        workers = [_Worker(self._ctx, spec, i) for i in range(self.slots)]
        try:
            names = {w.wait_ready(start_timeout_s) for w in workers}
        except BaseException:
            for w in workers:
                w.stop()
            raise
        self.engine_name = names.pop()
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for w in workers:
            self._idle.put(w)
        self._all = workers
        self._lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all]

    @property
    def batches_per_worker(self) -> list[int]:
        return [w.batches for w in self._all]

    def run(self, items: list[Item]) -> list[ItemResult]:
        worker = self._idle.get()
        try:
            worker.conn.send(items)
            results = worker.conn.recv()
            worker.batches += 1
        except (EOFError, OSError) as exc:
            # The worker died mid-batch (killed, out of memory): fail this batch's images only
            # and put a fresh worker in its place.
            log.error("worker %s died (%s); restarting it", worker.process.pid, exc)
            worker = self._replace(worker)
            message = f"worker process died: {type(exc).__name__}"
            return [ItemResult(error=(ImageErrorCode.INFERENCE_FAILED.value, message)) for _ in items]
        finally:
            self._idle.put(worker)
        return results

    def _replace(self, dead: _Worker) -> _Worker:
        dead.process.kill()
        dead.process.join()
        started = time.perf_counter()
        fresh = _Worker(self._ctx, self._spec, dead.index)
        fresh.wait_ready(self._timeout)
        with self._lock:
            self._all = [fresh if w is dead else w for w in self._all]
        log.info("replacement worker %s ready in %.2fs", fresh.process.pid, time.perf_counter() - started)
        return fresh

    def close(self) -> None:
        for w in self._all:
            w.stop()


def make_runner(spec: RunnerSpec) -> Runner:
    if spec.model.runner == "process":
        return ProcessRunner(spec)
    if spec.model.runner == "thread":
        return ThreadRunner(spec)
    raise ValueError(f"unknown runner {spec.model.runner!r}; use process or thread")
