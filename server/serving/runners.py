"""Runners: where batches are decoded and scored, `slots` batches at a time.

- ProcessRunner (default): one worker process per slot, each with its own single-threaded
  engine. Python's GIL caps one process; decode + inference dominate the CPU cost, so moving
  them to workers lets every core work, while one front process keeps the gRPC connections
  and hands out work per batch, not per connection (a client with a single HTTP/2 channel
  still uses every worker).
- ThreadRunner: the same work on threads of the server process with one shared engine;
  Pillow and ONNX Runtime release the GIL for most of it. Fewer processes, less memory."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import multiprocessing
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from server.config import ModelConfig
from server.errors import ImageErrorCode
from server.serving.batch import Item, ItemResult, process_batch
from server.serving.loading import RunnerSpec, load_engine
from server.serving.worker import worker_main

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


class Runner(Protocol):
    slots: int
    engine_name: str

    def run(self, items: list[Item]) -> list[ItemResult]: ...

    def close(self) -> None: ...


def worker_count(config: ModelConfig) -> int:
    return config.workers or len(os.sched_getaffinity(0))


class ThreadRunner:
    def __init__(self, spec: RunnerSpec):
        self.slots = worker_count(spec.model)
        self._spec = spec
        # Not threads x slots: concurrent runs of one ONNX Runtime session share its intra-op
        # pool, whose threads spin while they wait; with one thread per run each batch runs on
        # its slot's own thread and nothing spins (10.7 -> 7.6 ms of CPU per image measured).
        self._engine, self._size = load_engine(spec, spec.model.threads)
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


class _NotStarted(WorkerDied):
    """Sent to a worker that died before it began the batch: safe to send again."""


STOP = pickle.dumps(None)  # what the worker exits on


def _frame(payload: bytes) -> bytes:
    """The header multiprocessing.Connection puts before a message (the worker reads with one)."""
    if len(payload) > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, len(payload))
    return struct.pack("!i", len(payload))


class _AnswerReader(asyncio.Protocol):
    """A worker's answers, read on the event loop: multiprocessing.Connection frames of pickled
    results, in the order the batches were sent."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 4:
            (size,) = struct.unpack_from("!i", self._buffer)
            start = 4
            if size == -1:
                if len(self._buffer) < 12:
                    return
                (size,) = struct.unpack_from("!Q", self._buffer, 4)
                start = 12
            if len(self._buffer) < start + size:
                return
            answer = pickle.loads(self._buffer[start : start + size])
            del self._buffer[: start + size]
            self._worker.answered(answer)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.lost(exc or EOFError("worker closed its pipe"))


class _Worker:
    """One worker process and the batches sent to it that have not come back yet, oldest
    first: the worker answers in order, so each answer settles the oldest.

    Started and made ready on any thread (spawning and loading block); attach() then hands its
    pipes to the event loop, which does all further I/O: no thread sits between a batch and its
    worker, in either direction."""

    def __init__(self, ctx, spec: RunnerSpec, index: int):
        self.index = index
        self.batches = 0
        self.load_nice: int | None = None  # what the worker reports when ready
        self.serve_nice: int | None = None
        self.alive = False
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.write_fd = -1
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._on_death: Callable[[_Worker, BaseException], None] | None = None
        # One pipe each way, so that sending the next batch and reading the last answer never
        # share a connection.
        self._inbox, child_out = ctx.Pipe(duplex=False)
        child_in, self._outbox = ctx.Pipe(duplex=False)
        # The spec travels pickled, so that unpickling it (and the numpy, Pillow and ONNX
        # Runtime imports that come with it) happens on the worker's low-priority loading thread.
        self.process = ctx.Process(
            target=worker_main,
            args=(child_in, child_out, pickle.dumps(spec)),
            name=f"moderation-worker-{index}",
            daemon=True,
        )
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
        return detail

    async def attach(self, on_death: Callable[[_Worker, BaseException], None]) -> None:
        """On the event loop: its pipes become non-blocking transports of the loop."""
        loop = asyncio.get_running_loop()
        self._on_death = on_death
        inbox = os.fdopen(os.dup(self._inbox.fileno()), "rb", buffering=0)
        outbox = os.fdopen(os.dup(self._outbox.fileno()), "wb", buffering=0)
        self._inbox.close()
        self._outbox.close()
        self.write_fd = outbox.fileno()
        self._reader, _ = await loop.connect_read_pipe(lambda: _AnswerReader(self), inbox)
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, outbox)
        self.alive = True

    def submit(self, payload: bytes) -> asyncio.Future:
        """On the event loop: queues the pickled batch (the transport writes what the pipe
        does not take at once when the worker reads) and returns its answer's future."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        self._writer.write(_frame(payload))
        self._writer.write(payload)
        return future

    def answered(self, results: list[ItemResult]) -> None:
        self.batches += 1
        future = self.pending.popleft()
        if not future.done():  # its caller may have been cancelled
            future.set_result(results)

    def lost(self, cause: BaseException) -> None:
        """The worker is gone. It reads and answers one batch at a time, in order, so only the
        oldest unanswered batch can have been running (and can be what killed it: it fails);
        the ones behind it were never started and go to another worker."""
        if not self.alive:
            return
        self.alive = False
        lost, self.pending = list(self.pending), collections.deque()
        for i, future in enumerate(lost):
            if not future.done():
                kind = WorkerDied if i == 0 else _NotStarted
                future.set_exception(kind(f"worker process died: {type(cause).__name__}"))
        if self._writer is not None and not self._writer.is_closing():
            self._writer.abort()
        if self._on_death is not None:
            self._on_death(self, cause)

    def shut(self) -> None:
        """On the event loop: asks the worker to exit once it has answered what it holds."""
        self.alive = False
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_frame(STOP))
            self._writer.write(STOP)
            self._writer.close()

    def join(self) -> None:
        """Blocking: waits for the process, killing it if it does not exit."""
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for end in (self._inbox, self._outbox):
            end.close()

    def close_pipes(self) -> None:
        """On the event loop, once the process has exited."""
        for transport in (self._reader, self._writer):
            if transport is not None and not transport.is_closing():
                transport.close()


class ProcessRunner:
    """`workers` processes, each sent up to `pipeline_depth` batches at a time. All pipe I/O
    runs on one event loop: the server's (run_async on it), or a thread of the runner's own
    when none is given (run from any other thread). A worker that dies fails the batch it was
    running and is replaced at once; the batches queued behind it and those sent meanwhile go
    to the others, or wait for the replacement.

    Construct it off the loop it is given (asyncio.to_thread): starting workers blocks."""

    def __init__(self, spec: RunnerSpec, start_timeout_s: float = 120.0, loop: asyncio.AbstractEventLoop | None = None):
        workers = worker_count(spec.model)
        self.slots = workers * max(1, spec.model.pipeline_depth)
        self._spec = spec
        self._timeout = start_timeout_s
        self._closing = False
        self._changed = asyncio.Event()  # set when a worker is replaced
        self._own_thread: threading.Thread | None = None
        # spawn, not fork: the parent holds gRPC and asyncio state that must not be copied.
        self._ctx = multiprocessing.get_context("spawn")
        started = [_Worker(self._ctx, spec, i) for i in range(workers)]
        try:
            names = {w.wait_ready(start_timeout_s) for w in started}
        except BaseException:
            for w in started:
                w.process.kill()
                w.join()
            raise
        self.engine_name = names.pop()
        self._all = started
        if loop is None:
            loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=loop.run_forever, name="process-runner-io", daemon=True)
            self._own_thread.start()
        self._loop = loop
        self._call(self._attach(started))

    def _call(self, coroutine, timeout: float | None = None) -> object:
        """Runs a coroutine on the runner's loop from another thread and waits for it."""
        if _running_loop() is self._loop or self._loop.is_closed() or not self._loop.is_running():
            coroutine.close()
            raise RuntimeError(
                "ProcessRunner: its event loop is not running, or this is that loop's own thread (use run_async there)"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _attach(self, workers: list[_Worker]) -> None:
        for w in workers:
            await w.attach(self._on_death)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all]

    @property
    def priorities(self) -> list[tuple[int | None, int | None]]:
        """(nice of the thread that loaded the model, nice of the serving thread) per worker."""
        return [(w.load_nice, w.serve_nice) for w in self._all]

    @property
    def live_pids(self) -> list[int]:
        """The workers that take batches now (a dead one leaves as soon as its pipe closes)."""
        return [w.process.pid for w in self._all if w.alive]

    @property
    def batches_per_worker(self) -> list[int]:
        return [w.batches for w in self._all]

    def run(self, items: list[Item]) -> list[ItemResult]:
        return self._call(self.run_async(items))

    async def run_async(self, items: list[Item]) -> list[ItemResult]:
        """On the runner's loop."""
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        deadline = time.monotonic() + self._timeout
        while True:
            worker = await self._pick(deadline)
            if worker is None:
                return self._failed(items, WorkerDied("no worker process is running"))
            try:
                return await worker.submit(payload)
            except _NotStarted:
                continue  # it never ran: the next worker (or the replacement) takes it
            except WorkerDied as exc:
                # Killed or out of memory while running it: this batch fails, nothing else.
                return self._failed(items, exc)

    async def _pick(self, deadline: float) -> _Worker | None:
        """The least loaded live worker (the batcher's slots keep every worker's queue short).
        A batch that no worker can take yet waits for a replacement rather than failing."""
        while True:
            live = [w for w in self._all if w.alive]
            if live:
                return min(live, key=lambda w: len(w.pending))
            if self._closing or time.monotonic() >= deadline:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    @staticmethod
    def _failed(items: list[Item], exc: BaseException) -> list[ItemResult]:
        return [ItemResult(error=(ImageErrorCode.INFERENCE_FAILED.value, str(exc))) for _ in items]

    def _on_death(self, dead: _Worker, exc: BaseException) -> None:
        """On the loop, when a worker's pipe closes: its replacement starts on a thread."""
        if self._closing:
            return
        log.error("worker %s died (%s: %s); restarting it", dead.process.pid, type(exc).__name__, exc)
        self._loop.run_in_executor(None, self._replace, dead)

    def _replace(self, dead: _Worker) -> None:
        dead.process.kill()
        dead.join()
        started = time.perf_counter()
        fresh = None
        try:
            fresh = _Worker(self._ctx, self._spec, dead.index)
            fresh.wait_ready(self._timeout)
            if self._closing:
                raise RuntimeError("the runner closed meanwhile")
            self._call(self._install(fresh, dead), self._timeout)
        except Exception as exc:
            if fresh is not None and not fresh.alive:
                fresh.process.kill()
                fresh.join()
            if self._closing:
                log.info("replacement for worker %s not needed: %s", dead.index, exc)
            else:
                log.exception("replacement for worker %s failed; serving with the others", dead.index)
            return
        if self._closing:  # closed while it attached: _install asked it to exit
            fresh.join()
            return
        log.info("replacement worker %s ready in %.2fs", fresh.process.pid, time.perf_counter() - started)

    async def _install(self, fresh: _Worker, dead: _Worker) -> None:
        await fresh.attach(self._on_death)
        if self._closing:
            fresh.shut()
            return
        self._all = [fresh if w is dead else w for w in self._all]
        self._changed.set()

    def close(self) -> None:
        """Blocking; call it off the runner's loop."""
        self._closing = True
        workers = list(self._all)

        async def shut() -> None:
            for w in workers:
                w.shut()
            self._changed.set()

        async def close_pipes() -> None:
            for w in workers:
                w.close_pipes()

        if self._loop.is_running():
            self._call(shut())
        for w in workers:
            w.join()
        if self._loop.is_running():
            self._call(close_pipes())
        if self._own_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._own_thread.join()
            self._loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def make_runner(spec: RunnerSpec, loop: asyncio.AbstractEventLoop | None = None) -> Runner:
    """loop: the event loop a process runner does its I/O on (the server's)."""
    if spec.model.runner == "process":
        return ProcessRunner(spec, loop=loop)
    if spec.model.runner == "thread":
        return ThreadRunner(spec)
    raise ValueError(f"unknown runner {spec.model.runner!r}; use process or thread")
