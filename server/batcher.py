"""Dynamic batching: images of concurrent calls are joined into one model call.

An image waits at most `max_queue_delay_ms` for company when the engine is idle; while a batch
runs, newcomers queue and go together in the next one, so batches grow with load by
themselves. The queue is bounded: past `max_queued_images`, submit() fails fast."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from server.config import BatchConfig
from server.errors import ImageError, ImageErrorCode, Overloaded
from server.metrics import Metrics

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], config: BatchConfig,
                 executor: Executor, metrics: Metrics):
        self._predict = predict
        self._config = config
        self._executor = executor
        self._metrics = metrics
        self._pending: list[tuple[np.ndarray, asyncio.Future, float]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def close(self) -> None:
        """Finishes what is queued, then stops."""
        self._closing = True
        self._arrived.set()
        if self._task:
            await self._task

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, image: np.ndarray) -> np.ndarray:
        if self._closing:
            raise RuntimeError("batcher is closed")
        if len(self._pending) >= self._config.max_queued_images:
            raise Overloaded(f"{len(self._pending)} images are already waiting for the model; retry later")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((image, future, time.perf_counter()))
        self._metrics.queued_images.inc()
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        delay = self._config.max_queue_delay_ms / 1000.0
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Idle engine: give the first image a short while to gather company.
            first_at = self._pending[0][2]
            while len(self._pending) < self._config.max_batch_size and not self._closing:
                left = first_at + delay - time.perf_counter()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self._pending[: self._config.max_batch_size]
            del self._pending[: len(batch)]
            self._metrics.queued_images.dec(len(batch))
            live = [item for item in batch if not item[1].done()]  # callers that gave up are skipped
            if live:
                await self._run_batch(live)

    async def _run_batch(self, batch: list[tuple[np.ndarray, asyncio.Future, float]]) -> None:
        started = time.perf_counter()
        for _, _, enqueued in batch:
            self._metrics.stage_seconds.labels("queue").observe(started - enqueued)
        self._metrics.batch_size.observe(len(batch))
        try:
            images = np.stack([item[0] for item in batch])
            scores = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, images)
            if scores.shape[0] != len(batch):
                raise ValueError(f"engine returned {scores.shape[0]} rows for {len(batch)} images")
        except Exception as exc:  # a failing batch fails its own images, never the server
            log.exception("model call failed for a batch of %d images", len(batch))
            error = ImageError(ImageErrorCode.INFERENCE_FAILED, f"model call failed: {type(exc).__name__}: {exc}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        elapsed = time.perf_counter() - started
        for row, (_, future, _) in zip(scores, batch, strict=True):
            self._metrics.stage_seconds.labels("inference").observe(elapsed)
            if not future.done():
                future.set_result(row)
