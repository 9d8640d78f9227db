"""Runners: where batches are decoded and scored, `slots` batches at a time.

- ProcessRunner (default): one worker process per slot, each with its own single-threaded
  engine. Python's GIL caps one process; decode + inference dominate the CPU cost, so moving
  them to workers lets every core work, while one front process keeps the gRPC connections
  and hands out work per batch, not per connection (a client with a single HTTP/2 channel
  still uses every worker).
- ThreadRunner: the same work on threads of the server process with one shared engine;
  Pillow and ONNX Runtime release the GIL for most of it. Fewer processes, less memory."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from server.config import ModelConfig
from server.decode import DecodeConfig
from server.engines import open_engine
from server.errors import ImageErrorCode
from server.inference import Item, ItemResult, process_batch
from server.worker import worker_main

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


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


def _widen_pipe(fd: int) -> None:
    # A batch of photos is megabytes; through Linux's default 64 KB pipe it would take dozens
    # of writer/reader context switches, each a few microseconds of both cores' time.
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or over pipe-max-size
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class WorkerDied(RuntimeError):
    pass


class _Worker:
    """One worker process and the batches sent to it that have not come back yet, oldest
    first: the worker answers in order, so a reader thread hands each answer to the oldest."""

    def __init__(self, ctx, spec: RunnerSpec, index: int):
        self.index = index
        self.batches = 0
        self.load_nice: int | None = None  # what the worker reports when ready
        self.serve_nice: int | None = None
        self.alive = False
        self.pending: collections.deque[Future] = collections.deque()
        self._send_lock = threading.Lock()
        # One pipe each way, so that sending the next batch and reading the last answer never
        # share a connection between threads.
        self._inbox, child_out = ctx.Pipe(duplex=False)
        child_in, self._outbox = ctx.Pipe(duplex=False)
        # The spec travels pickled, so that unpickling it (and the numpy, Pillow and ONNX
        # Runtime imports that come with it) happens on the worker's low-priority loading thread.
        self.process = ctx.Process(target=worker_main, args=(child_in, child_out, pickle.dumps(spec)),
                                   name=f"moderation-worker-{index}", daemon=True)
        self.process.start()
        for end in (self._outbox, self._inbox):
            _widen_pipe(end.fileno())
        child_in.close()
        child_out.close()

    def wait_ready(self, timeout: float) -> str:
        if not self._inbox.poll(timeout):
            raise TimeoutError(f"worker did not load its model within {timeout:.0f}s")
        try:
            kind, detail, *nice = self._inbox.recv()
        except EOFError:
            raise RuntimeError(f"worker exited during start-up (exit code {self.process.exitcode})") from None
        if kind != "ready":
            raise RuntimeError(f"worker failed to load the model: {detail}")
        self.load_nice, self.serve_nice = nice
        self.alive = True
        return detail

    def start_reader(self, on_death: Callable[[_Worker, BaseException], None]) -> None:
        threading.Thread(target=self._read, args=(on_death,), name=f"worker-{self.index}-reader",
                         daemon=True).start()

    def submit(self, items: list[Item]) -> Future:
        future: Future = Future()
        with self._send_lock:
            if not self.alive:
                raise WorkerDied("worker process is being replaced")
            # Queued before it is sent: the answer may arrive before send() returns.
            self.pending.append(future)
            try:
                self._outbox.send(items)
            except (OSError, ValueError) as exc:
                self.pending.remove(future)
                raise WorkerDied(f"worker process died: {type(exc).__name__}") from exc
        return future

    def _read(self, on_death: Callable[[_Worker, BaseException], None]) -> None:
        while True:
            try:
                results = self._inbox.recv()
            except (EOFError, OSError) as exc:
                cause: BaseException = exc
                break
            self.batches += 1
            self.pending.popleft().set_result(results)
        with self._send_lock:
            self.alive = False
            lost, self.pending = list(self.pending), collections.deque()
        for future in lost:
            future.set_exception(WorkerDied(f"worker process died: {type(cause).__name__}"))
        on_death(self, cause)

    def stop(self) -> None:
        with self._send_lock:
            self.alive = False
            with contextlib.suppress(OSError):
                self._outbox.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._outbox.close()


class ProcessRunner:
    """`workers` processes, each sent up to `pipeline_depth` batches at a time (a reader thread
    per worker hands its answers back in order). A worker that dies fails the batches it held
    and is replaced at once; batches sent meanwhile go to the others, or wait for it."""

    def __init__(self, spec: RunnerSpec, start_timeout_s: float = 120.0):
        workers = worker_count(spec.model)
        self.slots = workers * max(1, spec.model.pipeline_depth)
        self._spec = spec
        self._timeout = start_timeout_s
        self._closing = False
        self._changed = threading.Condition()  # guards _all; notified when a worker is replaced
        # spawn, not fork: the parent holds gRPC and asyncio state that must not be copied.
        self._ctx = multiprocessing.get_context("spawn")
        started = [_Worker(self._ctx, spec, i) for i in range(workers)]
        try:
            names = {w.wait_ready(start_timeout_s) for w in started}
        except BaseException:
            for w in started:
                w.stop()
            raise
        self.engine_name = names.pop()
        self._all = started
        for w in started:
            w.start_reader(self._on_death)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all]

    @property
    def priorities(self) -> list[tuple[int | None, int | None]]:
        """(nice of the thread that loaded the model, nice of the serving thread) per worker."""
        return [(w.load_nice, w.serve_nice) for w in self._all]

    @property
    def batches_per_worker(self) -> list[int]:
        return [w.batches for w in self._all]

    def run(self, items: list[Item]) -> list[ItemResult]:
        with self._changed:
            # A batch that no worker holds yet waits for a replacement rather than failing.
            self._changed.wait_for(lambda: self._closing or any(w.alive for w in self._all), self._timeout)
            live = [w for w in self._all if w.alive]
            # The least loaded worker; the batcher's slots keep every worker's queue short.
            worker = min(live, key=lambda w: len(w.pending)) if live else None
            try:
                if worker is None:
                    raise WorkerDied("no worker process is running")
                future = worker.submit(items)
            except WorkerDied as exc:
                return self._failed(items, exc)
        try:
            return future.result()
        except WorkerDied as exc:
            # Killed or out of memory: the batches it held fail, nothing else; it is replaced.
            return self._failed(items, exc)

    @staticmethod
    def _failed(items: list[Item], exc: BaseException) -> list[ItemResult]:
        return [ItemResult(error=(ImageErrorCode.INFERENCE_FAILED.value, str(exc))) for _ in items]

    def _on_death(self, dead: _Worker, exc: BaseException) -> None:
        if self._closing:
            return
        log.error("worker %s died (%s: %s); restarting it", dead.process.pid, type(exc).__name__, exc)
        dead.process.kill()
        dead.process.join()
        started = time.perf_counter()
        try:
            fresh = _Worker(self._ctx, self._spec, dead.index)
            fresh.wait_ready(self._timeout)
        except Exception:
            log.exception("replacement for worker %s failed; serving with the others", dead.index)
            return
        fresh.start_reader(self._on_death)
        with self._changed:
            if self._closing:
                fresh.stop()
                return
            self._all = [fresh if w is dead else w for w in self._all]
            self._changed.notify_all()
        log.info("replacement worker %s ready in %.2fs", fresh.process.pid, time.perf_counter() - started)

    def close(self) -> None:
        with self._changed:
            self._closing = True
            workers = list(self._all)
            self._changed.notify_all()
        for w in workers:
            w.stop()


def make_runner(spec: RunnerSpec) -> Runner:
    if spec.model.runner == "process":
        return ProcessRunner(spec)
    if spec.model.runner == "thread":
        return ThreadRunner(spec)
    raise ValueError(f"unknown runner {spec.model.runner!r}; use process or thread")
