"""Dynamic batching: images of concurrent calls are joined into one model call.

An image waits at most `max_queue_delay_ms` for company when a runner slot frees and no other
slot is idle (with spare capacity it goes at once); while every slot is busy, newcomers queue,
and each slot that frees takes an even share of the queue (up to `max_batch_size`), so batches
grow with load by themselves while the oldest calls are spread over every slot rather than all
waiting for one long batch. The queue is bounded: past `max_queued_images`, submit() fails
fast."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from server.config import BatchConfig
from server.errors import ImageError, ImageErrorCode, Overloaded
from server.metrics import Metrics

log = logging.getLogger(__name__)


class Batcher:
    """`run(items) -> results` is called at most `slots` batches at a time and returns one
    result per item; a result that is an exception fails that item alone. A coroutine function
    is awaited on the loop (it does its own I/O: the process runner); a plain one runs on a
    thread (it computes: the thread runner)."""

    def __init__(
        self,
        run: Callable[[list[Any]], Sequence[Any] | Awaitable[Sequence[Any]]],
        config: BatchConfig,
        metrics: Metrics,
        slots: int = 1,
    ):
        self._run_fn = run
        self._run_is_async = inspect.iscoroutinefunction(run)
        self._config = config
        self._metrics = metrics
        self._slots = asyncio.Semaphore(slots)
        self._idle_slots = slots
        self._slot_count = slots
        self._executor = (
            None if self._run_is_async else ThreadPoolExecutor(max_workers=slots, thread_name_prefix="batch")
        )
        self._pending: list[tuple[Any, asyncio.Future, float]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="batcher")

    async def close(self) -> None:
        """Finishes what is queued and running, then stops."""
        self._closing = True
        self._arrived.set()
        if self._task:
            await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, item: Any) -> Any:
        if self._closing:
            raise RuntimeError("batcher is closed")
        if len(self._pending) >= self._config.max_queued_images:
            raise Overloaded(f"{len(self._pending)} images are already waiting for the model; retry later")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future, time.perf_counter()))
        self._metrics.queued_images.inc()
        self._arrived.set()
        return await future

    async def _dispatch(self) -> None:
        delay = self._config.max_queue_delay_ms / 1000.0
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._slots.acquire()
            self._idle_slots -= 1
            # A slot is free. While every other slot is busy, give the oldest image a short while
            # to gather company: the engine is the bottleneck then, and fuller batches cost it less
            # per image. With another slot idle there is spare capacity, and waiting would only add
            # the delay to the call's latency (measured: median p50 of 4-image posts at half load
            # 33.9 against 38.4 ms).
            first_at = self._pending[0][2]
            while not self._idle_slots and len(self._pending) < self._config.max_batch_size and not self._closing:
                left = first_at + delay - time.perf_counter()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            # Share what is waiting among the idle slots (this one included), so one post's
            # images are scored side by side at low load. With no other slot idle, take an even
            # share across all slots, not everything: the busy ones free up soon, and a batch
            # that took it all would make its last images wait for the whole batch. Under
            # saturation the queue is long and batches still fill up to max_batch_size.
            share = -(-len(self._pending) // (self._idle_slots + 1 if self._idle_slots else self._slot_count))
            batch = self._pending[: min(self._config.max_batch_size, share)]
            del self._pending[: len(batch)]
            self._metrics.queued_images.dec(len(batch))
            live = [item for item in batch if not item[1].done()]  # callers that gave up are skipped
            if not live:
                self._release_slot()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future, float]]) -> None:
        try:
            started = time.perf_counter()
            for _, _, enqueued in batch:
                self._metrics.stage_seconds.labels("queue").observe(started - enqueued)
            self._metrics.batch_size.observe(len(batch))
            try:
                items = [item[0] for item in batch]
                if self._run_is_async:
                    results = await self._run_fn(items)
                else:
                    results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_fn, items)
                if len(results) != len(batch):
                    raise ValueError(f"runner returned {len(results)} results for {len(batch)} images")
            except Exception as exc:  # a failing batch fails its own images, never the server
                log.exception("model call failed for a batch of %d images", len(batch))
                error = ImageError(ImageErrorCode.INFERENCE_FAILED, f"model call failed: {type(exc).__name__}: {exc}")
                results = [error] * len(batch)
            for result, (_, future, _) in zip(results, batch, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        self._idle_slots += 1
        self._slots.release()
