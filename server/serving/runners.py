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
import functools
import logging
import multiprocessing
import os
import pickle
import select
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import SpawnContext
from typing import Protocol

from server.config import ModelConfig
from server.errors import ImageError, ImageErrorCode
from server.serving import framing
from server.serving.batch import Item, ItemResult, process_batch
from server.serving.loading import RunnerSpec, load_engine, load_reader
from server.serving.worker import worker_main

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


class Runner(Protocol):
    """Used on the event loop: run() and close() are coroutines, and neither blocks it."""

    slots: int
    engine_name: str

    async def run(self, items: list[Item]) -> list[ItemResult]:
        """One result per item; a failure the runner expects (an image that does not decode, a
        model call or a worker that fails) is that item's error, not an exception."""
        ...

    async def close(self) -> None: ...


def worker_count(config: ModelConfig) -> int:
    return config.workers or len(os.sched_getaffinity(0))


class ThreadRunner:
    def __init__(self, spec: RunnerSpec):
        """Blocking: loads and warms the engine (start() does it off the loop)."""
        self.slots = worker_count(spec.model)
        self._spec = spec
        # Not threads x slots: concurrent runs of one ONNX Runtime session share its intra-op
        # pool, whose threads spin while they wait; with one thread per run each batch runs on
        # its slot's own thread and nothing spins (10.7 -> 7.6 ms of CPU per image measured).
        self._engine, self._size = load_engine(spec, spec.model.threads)
        # One reader for all slots: ONNX Runtime sessions may be run from several threads.
        self._reader = load_reader(spec)
        self.engine_name = self._engine.name
        # Its own threads, one per slot, rather than the loop's default executor: that one is
        # sized by core count, not slots, and also runs the audit API's and model loading's
        # blocking calls, which a batch must not queue behind.
        self._threads = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="batch")

    @classmethod
    async def start(cls, spec: RunnerSpec) -> ThreadRunner:
        return await asyncio.to_thread(cls, spec)

    async def run(self, items: list[Item]) -> list[ItemResult]:
        work = functools.partial(process_batch, self._engine, items, self._size, self._spec.decode, self._reader)
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)

    async def close(self) -> None:
        def close() -> None:
            self._threads.shutdown(wait=True)
            self._engine.close()

        await asyncio.to_thread(close)


def _widen_pipe(fd: int) -> None:
    # A batch of photos is megabytes; through Linux's default 64 KB pipe it would take dozens
    # of writer/reader context switches, each a few microseconds of both cores' time.
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or over pipe-max-size
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class WorkerDied(RuntimeError):
    pass


class _NotStarted(WorkerDied):
    """Sent to a worker that died before it began the batch: safe to send again."""


STOP = framing.encode(None)  # what the worker exits on


class _AnswerReader(asyncio.Protocol):
    """A worker's answers, read on the event loop: frames of pickled results, in the order the
    batches were sent."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._frames = framing.FrameDecoder()

    def data_received(self, data: bytes) -> None:
        for answer in self._frames.feed(data):
            self._worker.answered(answer)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.lost(exc or EOFError("worker closed its pipe"))


class _Worker:
    """One worker process and the batches sent to it that have not come back yet, oldest
    first: the worker answers in order, so each answer settles the oldest.

    Started and made ready off the event loop (spawning and loading block); attach() then
    hands its pipes to the loop, which does all further I/O: no thread sits between a batch
    and its worker, in either direction."""

    def __init__(self, ctx: SpawnContext, spec: RunnerSpec, index: int):
        self.index = index
        self.batches = 0
        self.load_nice: int | None = None  # what the worker reports when ready
        self.serve_nice: int | None = None
        self.alive = False
        self.pending: collections.deque[asyncio.Future[list[ItemResult]]] = collections.deque()
        self.write_fd = -1
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._on_death: Callable[[_Worker, BaseException], None] | None = None
        # One pipe each way, so that sending the next batch and reading the last answer never
        # share a file. Connections only to carry the pipes into the spawned process: both ends
        # frame with server.serving.framing on the file descriptors.
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

    @property
    def pid(self) -> int:
        assert self.process.pid is not None  # started in __init__
        return self.process.pid

    def wait_ready(self, timeout: float) -> str:
        """Blocking: the worker's first frame, which says whether its model loaded."""
        fd = self._inbox.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError(f"worker did not load its model within {timeout:.0f}s")
        try:
            kind, detail, *nice = framing.read_frame(fd)
        except EOFError:
            raise RuntimeError(f"worker exited during start-up (exit code {self.process.exitcode})") from None
        if kind != "ready":
            raise RuntimeError(f"worker failed to load the model: {detail}")
        self.load_nice, self.serve_nice = nice
        return str(detail)

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

    def submit(self, frame: bytes) -> asyncio.Future[list[ItemResult]]:
        """On the event loop: queues the framed batch (the transport writes what the pipe does
        not take at once when the worker reads) and returns its answer's future."""
        assert self._writer is not None, "submit before attach"
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        self._writer.write(frame)
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

    def kill(self) -> None:
        """Blocking."""
        self.process.kill()
        self.join()

    def close_pipes(self) -> None:
        """On the event loop, once the process has exited."""
        for transport in (self._reader, self._writer):
            if transport is not None and not transport.is_closing():
                transport.close()


def _each(workers: list[_Worker], blocking: Callable[[_Worker], None]) -> None:
    for w in workers:
        blocking(w)


def _start_workers(
    ctx: SpawnContext, spec: RunnerSpec, indices: list[int], timeout: float
) -> tuple[list[_Worker], str]:
    """Blocking: a worker per index, loading side by side, and the name of their engine."""
    started: list[_Worker] = []
    try:
        started.extend(_Worker(ctx, spec, i) for i in indices)
        names = {w.wait_ready(timeout) for w in started}
    except BaseException:
        for w in started:
            w.kill()
        raise
    return started, names.pop()


def _start_worker(ctx: SpawnContext, spec: RunnerSpec, index: int, timeout: float) -> _Worker:
    """Blocking: one worker, loaded."""
    return _start_workers(ctx, spec, [index], timeout)[0][0]


class ProcessRunner:
    """`workers` processes, each sent up to `pipeline_depth` batches at a time, all pipe I/O on
    the event loop it was started on. A worker that dies fails the batch it was running and is
    replaced at once; the batches queued behind it and those sent meanwhile go to the others, or
    wait for the replacement."""

    def __init__(self, spec: RunnerSpec, ctx: SpawnContext, workers: list[_Worker], engine_name: str, timeout: float):
        """Use start()."""
        self.slots = len(workers) * max(1, spec.model.pipeline_depth)
        self.engine_name = engine_name
        self._spec = spec
        self._ctx = ctx
        self._timeout = timeout
        self._closing = False
        self._changed = asyncio.Event()  # set when a worker is replaced
        self._replacing: set[asyncio.Task[None]] = set()
        self._all = workers

    @classmethod
    async def start(cls, spec: RunnerSpec, start_timeout_s: float = 120.0) -> ProcessRunner:
        """Starts the workers off the loop (spawning and loading block) and attaches their pipes
        to this loop."""
        # spawn, not fork: the parent holds gRPC and asyncio state that must not be copied.
        ctx = multiprocessing.get_context("spawn")
        workers, engine_name = await asyncio.to_thread(
            _start_workers, ctx, spec, list(range(worker_count(spec.model))), start_timeout_s
        )
        runner = cls(spec, ctx, workers, engine_name, start_timeout_s)
        try:
            for w in workers:
                await w.attach(runner._on_death)
        except BaseException:
            runner._closing = True
            for w in workers:
                w.close_pipes()
            await asyncio.to_thread(_each, workers, _Worker.kill)
            raise
        return runner

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._all]

    @property
    def priorities(self) -> list[tuple[int | None, int | None]]:
        """(nice of the thread that loaded the model, nice of the serving thread) per worker."""
        return [(w.load_nice, w.serve_nice) for w in self._all]

    @property
    def live_pids(self) -> list[int]:
        """The workers that take batches now (a dead one leaves as soon as its pipe closes)."""
        return [w.pid for w in self._all if w.alive]

    @property
    def batches_per_worker(self) -> list[int]:
        return [w.batches for w in self._all]

    async def run(self, items: list[Item]) -> list[ItemResult]:
        frame = framing.encode(items)
        deadline = time.monotonic() + self._timeout
        while True:
            worker = await self._pick(deadline)
            if worker is None:
                return self._failed(items, WorkerDied("no worker process is running"))
            try:
                return await worker.submit(frame)
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
    def _failed(items: list[Item], exc: WorkerDied) -> list[ItemResult]:
        return [ItemResult.failed(ImageError(ImageErrorCode.INFERENCE_FAILED, str(exc))) for _ in items]

    def _on_death(self, dead: _Worker, exc: BaseException) -> None:
        """On the loop, when a worker's pipe closes: its replacement starts."""
        if self._closing:
            return
        log.error("worker %s died (%s: %s); restarting it", dead.pid, type(exc).__name__, exc)
        task = asyncio.get_running_loop().create_task(self._replace(dead), name=f"replace-worker-{dead.index}")
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, dead: _Worker) -> None:
        started = time.perf_counter()
        fresh = None
        try:
            await asyncio.to_thread(dead.kill)
            dead.close_pipes()
            fresh = await asyncio.to_thread(_start_worker, self._ctx, self._spec, dead.index, self._timeout)
            if self._closing:
                raise RuntimeError("the runner closed meanwhile")
            await fresh.attach(self._on_death)
        except Exception as exc:
            if fresh is not None:
                fresh.close_pipes()
                await asyncio.to_thread(fresh.kill)
            if self._closing:
                log.info("replacement for worker %s not needed: %s", dead.index, exc)
            else:
                log.exception("replacement for worker %s failed; serving with the others", dead.index)
            return
        if self._closing:  # closed while it attached
            fresh.shut()
            await asyncio.to_thread(fresh.join)
            fresh.close_pipes()
            return
        self._all = [fresh if w is dead else w for w in self._all]
        self._changed.set()
        log.info("replacement worker %s ready in %.2fs", fresh.pid, time.perf_counter() - started)

    async def close(self) -> None:
        """Asks every worker to exit once it has answered what it holds, and waits for them
        (and for a replacement being started) to go."""
        self._closing = True
        workers = list(self._all)
        for w in workers:
            w.shut()
        self._changed.set()
        await asyncio.to_thread(_each, workers, _Worker.join)
        for w in workers:
            w.close_pipes()
        if self._replacing:
            await asyncio.gather(*self._replacing, return_exceptions=True)


async def start_runner(spec: RunnerSpec) -> Runner:
    """The runner `spec.model.runner` names, started; on the running loop for its I/O."""
    if spec.model.runner == "process":
        return await ProcessRunner.start(spec)
    if spec.model.runner == "thread":
        return await ThreadRunner.start(spec)
    raise ValueError(f"unknown runner {spec.model.runner!r}; use process or thread")
