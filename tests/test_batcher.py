"""The dynamic batcher, with a plain-numpy predict function standing in for the engine."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from server.config import BatchConfig
from server.errors import ImageError, ImageErrorCode, Overloaded
from server.metrics import Metrics
from server.serving.batcher import Batcher


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


def echo_predict(batches: list[int]):
    def predict(items: list[np.ndarray]) -> np.ndarray:
        images = np.stack(items)
        batches.append(len(images))
        # Each row's "score" is the value its caller painted: a mix-up would show.
        return images[:, 0, 0, :].astype(np.float32)

    return predict


async def with_batcher(predict, config: BatchConfig, body, slots: int = 1):
    """predict: a plain function, run on a thread as the thread runner runs its batches; a
    failed item's result is its ImageError."""

    async def run(items):
        return await asyncio.to_thread(predict, items)

    batcher = Batcher(run, config, Metrics(), failed=lambda error: error, slots=slots)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.close()


def test_results_return_to_their_callers_and_calls_are_joined():
    batches: list[int] = []

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit(image(v)) for v in range(200)))

    rows = asyncio.run(with_batcher(echo_predict(batches), BatchConfig(max_batch_size=16, max_queue_delay_ms=5), body))
    assert [int(r[0]) for r in rows] == list(range(200))
    assert sum(batches) == 200
    assert max(batches) == 16  # joined, and never past the bound
    assert len(batches) < 200


def test_a_failing_batch_fails_only_its_own_images():
    poison = 99

    def predict(items):
        images = np.stack(items)
        if (images[:, 0, 0, 0] == poison).any():
            raise RuntimeError("engine exploded")
        return images[:, 0, 0, :].astype(np.float32)

    async def body(batcher):
        first = await asyncio.gather(*(batcher.submit(image(v)) for v in (1, poison, 2)), return_exceptions=True)
        second = await asyncio.gather(*(batcher.submit(image(v)) for v in (3, 4)))
        return first, second

    first, second = asyncio.run(with_batcher(predict, BatchConfig(max_batch_size=3, max_queue_delay_ms=50), body))
    assert all(isinstance(r, ImageError) and r.code == ImageErrorCode.INFERENCE_FAILED for r in first)
    assert "engine exploded" in first[0].message
    assert [int(r[0]) for r in second] == [3, 4]


def test_queue_bound_rejects_fast():
    release = threading.Event()

    def slow_predict(items):
        release.wait(10)
        return np.stack(items)[:, 0, 0, :].astype(np.float32)

    async def body(batcher):
        running = asyncio.ensure_future(batcher.submit(image(1)))
        await asyncio.sleep(0.05)  # the first image is now inside the engine
        queued = [asyncio.ensure_future(batcher.submit(image(v))) for v in (2, 3)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="already waiting"):
            await batcher.submit(image(4))
        rejected_in = time.perf_counter() - started
        release.set()
        done = await asyncio.gather(running, *queued)
        return rejected_in, done

    rejected_in, done = asyncio.run(
        with_batcher(slow_predict, BatchConfig(max_batch_size=8, max_queue_delay_ms=1, max_queued_images=2), body)
    )
    assert rejected_in < 0.5
    assert [int(r[0]) for r in done] == [1, 2, 3]


def lone_image_wait(delay_ms: float, slots: int) -> float:
    """Seconds from one image's submit to the engine call that scores it, nothing else queued."""
    called_at: list[float] = []

    def predict(items):
        called_at.append(time.perf_counter())
        return np.stack(items)[:, 0, 0, :].astype(np.float32)

    async def body(batcher):
        started = time.perf_counter()
        await batcher.submit(image(7))
        return started

    started = asyncio.run(
        with_batcher(predict, BatchConfig(max_batch_size=8, max_queue_delay_ms=delay_ms), body, slots=slots)
    )
    return called_at[0] - started


def test_lone_image_waits_at_most_the_queue_delay():
    # One slot, so nothing is idle beside it: it waits for company (about 100 ms), but not
    # much longer; generous margin for a busy machine.
    assert 0.08 <= lone_image_wait(100, slots=1) < 1.0


def test_with_another_slot_idle_an_image_goes_without_waiting_for_company():
    # A second slot idle means spare capacity: waiting would only add the delay to its latency.
    assert lone_image_wait(2000, slots=2) < 1.0


def test_full_batch_goes_without_waiting_for_the_delay():
    batches: list[int] = []

    async def body(batcher):
        started = time.perf_counter()
        await asyncio.gather(*(batcher.submit(image(v)) for v in range(4)))
        return time.perf_counter() - started

    elapsed = asyncio.run(
        with_batcher(echo_predict(batches), BatchConfig(max_batch_size=4, max_queue_delay_ms=5000), body)
    )
    assert batches == [4]
    assert elapsed < 2.5


def test_slots_run_batches_side_by_side_and_per_item_errors_stay_per_item():
    inside = 0
    most_inside = 0
    lock = threading.Lock()

    def run(items):
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        return [ImageError(ImageErrorCode.CORRUPT, "bad") if v == 13 else v * 2 for v in items]

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit(v) for v in range(40)), return_exceptions=True)

    results = asyncio.run(with_batcher(run, BatchConfig(max_batch_size=4, max_queue_delay_ms=1), body, slots=2))
    assert most_inside == 2
    assert isinstance(results[13], ImageError) and results[13].code == ImageErrorCode.CORRUPT
    assert [r for i, r in enumerate(results) if i != 13] == [v * 2 for v in range(40) if v != 13]


def test_a_posts_images_are_shared_among_idle_slots():
    batches: list[int] = []

    def run(items):
        batches.append(len(items))
        time.sleep(0.05)
        return list(items)

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit(v) for v in range(4)))

    results = asyncio.run(with_batcher(run, BatchConfig(max_batch_size=8, max_queue_delay_ms=20), body, slots=2))
    assert results == [0, 1, 2, 3]
    # Both slots start on the post at once, neither with more than half of it (the last image
    # goes to whichever slot frees first).
    assert batches[:2] == [2, 1] and sum(batches) == 4


def test_a_freed_slot_takes_an_even_share_of_the_queue_not_all_of_it():
    batches: list[list[int]] = []

    def run(items):
        batches.append(list(items))
        time.sleep(0.1)
        return list(items)

    async def body(batcher):
        first = [asyncio.ensure_future(batcher.submit(v)) for v in (0, 1)]
        await asyncio.sleep(0.03)  # both slots are busy with one image each
        rest = [asyncio.ensure_future(batcher.submit(v)) for v in range(2, 8)]
        return await asyncio.gather(*first, *rest)

    results = asyncio.run(with_batcher(run, BatchConfig(max_batch_size=8, max_queue_delay_ms=1), body, slots=2))
    assert results == list(range(8))
    # The first slot to free takes half of the six waiting (the other frees soon), not all six;
    # order is kept.
    assert batches[2] == [2, 3, 4] and [v for b in batches[3:] for v in b] == [5, 6, 7]
