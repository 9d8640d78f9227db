"""Runners: worker processes and threads give the same scores; a killed worker costs only its
batch and is replaced; work from a single gRPC channel reaches every worker."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import io
import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from loadtest.fake_model import publish_fake_version
from model.preprocess import DecodeConfig
from model.repository import latest_version_dir
from moderation_api.v1 import moderation_pb2 as pb
from server.config import ModelConfig
from server.errors import ImageErrorCode
from server.serving.runners import PIPE_BYTES, ProcessRunner, RunnerSpec, ThreadRunner
from tests.conftest import encode
from tests.harness import ServerThread, make_config


def spec(model_repo, workers: int) -> RunnerSpec:
    return RunnerSpec(
        str(latest_version_dir(model_repo, "moderation")), ModelConfig(workers=workers), DecodeConfig(), warmup_batch=4
    )


async def one_pipelined_worker(model_repo) -> ProcessRunner:
    base = spec(model_repo, 1)
    return await ProcessRunner.start(dataclasses.replace(base, model=dataclasses.replace(base.model, pipeline_depth=2)))


def noise_photo(seed: int) -> bytes:
    """A 1024x768 JPEG of noise: 300 of them keep a worker decoding for a second or more."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_process_and_thread_runners_agree(model_repo):
    items = [encode((r, 255 - r, 40)) for r in range(0, 256, 32)] + [b"not an image"]

    async def body():
        process = await ProcessRunner.start(spec(model_repo, 2))
        thread = await ThreadRunner.start(spec(model_repo, 2))
        try:
            assert os.getpid() not in process.pids and len(set(process.pids)) == 2
            return await process.run(items), await thread.run(items)
        finally:
            await process.close()
            await thread.close()

    a, b = asyncio.run(body())
    for x, y in zip(a[:-1], b[:-1], strict=True):
        assert x.error is None and x.content_sha256 == y.content_sha256
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-6)
        assert x.batch_size == len(items) - 1
    assert a[-1].error.code == ImageErrorCode.UNSUPPORTED_FORMAT and b[-1].error == a[-1].error


def test_workers_load_at_low_priority_and_serve_at_their_own(model_repo):
    base = spec(model_repo, 2)

    async def body():
        runner = await ProcessRunner.start(
            dataclasses.replace(base, model=dataclasses.replace(base.model, load_nice=7))
        )
        try:
            assert runner.priorities == [(7, 0), (7, 0)]
            # The serving thread (the process's main thread) really runs at the process's priority.
            assert all(os.getpriority(os.PRIO_PROCESS, pid) == 0 for pid in runner.pids)
            assert (await runner.run([encode((255, 0, 0))]))[0].error is None
        finally:
            await runner.close()
        plain = await ProcessRunner.start(
            dataclasses.replace(base, model=dataclasses.replace(base.model, load_nice=0, workers=1))
        )
        try:
            assert plain.priorities == [(0, 0)]
        finally:
            await plain.close()

    asyncio.run(body())


def test_killed_worker_fails_only_the_batch_it_held_and_is_replaced(model_repo):
    async def body():
        runner = await ProcessRunner.start(spec(model_repo, 1))
        try:
            victim = runner.pids[0]
            big = [noise_photo(0)] * 300  # a second or more of decoding
            held = asyncio.ensure_future(runner.run(big))
            await asyncio.sleep(0.2)
            os.kill(victim, signal.SIGKILL)
            failed = await asyncio.wait_for(held, 60)
            assert all(r.error.code == ImageErrorCode.INFERENCE_FAILED and "died" in r.error.message for r in failed)
            # A batch sent after the death waits for the replacement instead of failing.
            again = await runner.run([encode((255, 0, 0))])
            assert again[0].error is None and again[0].scores.argmax() == 1
            assert runner.pids[0] != victim
        finally:
            await runner.close()

    asyncio.run(body())


def test_a_batch_queued_behind_the_one_that_died_is_sent_again(model_repo):
    async def body():
        runner = await one_pipelined_worker(model_repo)
        try:
            victim = runner.pids[0]
            running = asyncio.ensure_future(runner.run([noise_photo(1)] * 300))
            await asyncio.sleep(0.2)
            queued = asyncio.ensure_future(runner.run([encode((255, 0, 0))]))  # waits in the pipe behind it
            await asyncio.sleep(0.2)
            os.kill(victim, signal.SIGKILL)
            failed, retried = await asyncio.wait_for(asyncio.gather(running, queued), 60)
            assert all(r.error.code == ImageErrorCode.INFERENCE_FAILED for r in failed)
            assert retried[0].error is None and retried[0].scores.argmax() == 1  # scored by the replacement
            assert runner.pids[0] != victim
        finally:
            await runner.close()

    asyncio.run(body())


def test_batches_are_pipelined_and_answered_in_order(model_repo):
    async def body():
        runner = await one_pipelined_worker(model_repo)
        try:
            assert runner.slots == 2
            worker = runner._all[0]
            # Widened pipes: a batch of photos crosses in a few writes, not dozens.
            assert fcntl.fcntl(worker.write_fd, fcntl.F_GETPIPE_SZ) == PIPE_BYTES
            colours = [(255, 0, 0), (0, 0, 255), (30, 200, 30), (250, 250, 250)]
            batches = [[encode(c)] * (i + 1) for i, c in enumerate(colours * 3)]
            four_at_a_time = asyncio.Semaphore(4)

            async def run(batch):
                async with four_at_a_time:
                    return await runner.run(batch)

            answers = await asyncio.gather(*(run(batch) for batch in batches))
            single = {c: (await runner.run([encode(c)]))[0].scores for c in colours}
            for batch, answer, colour in zip(batches, answers, colours * 3, strict=True):
                assert len(answer) == len(batch)
                for result in answer:
                    np.testing.assert_allclose(result.scores, single[colour], atol=1e-5)
        finally:
            await runner.close()

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_a_single_channel_uses_every_worker(model_repo, tmp_path):
    config = make_config(
        model_repo,
        tmp_path / "audit.sqlite3",
        model={"runner": "process", "workers": 2},
        batch={"max_batch_size": 4, "max_queue_delay_ms": 1},
    )
    running = ServerThread(config).start()
    try:
        request = pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode((0, 200, 0)))])
        with grpc.insecure_channel(running.target) as channel:  # one channel = one HTTP/2 connection
            stub = running.stub(channel)
            futures = [stub.Classify.future(request, timeout=30) for _ in range(64)]
            assert all(f.result().results[0].top_class == "ham" for f in futures)
        batches = running.service.models.current.runner.batches_per_worker
    finally:
        running.stop()
    assert len(batches) == 2 and min(batches) > 0, batches


@pytest.mark.timeout(120)
def test_on_the_server_loop_a_killed_worker_and_a_rollout_fail_no_call(model_repo, tmp_path):
    """The process runner's pipes live on the server's event loop: a worker's death is seen
    there, its replacement is started off it, and a rollout closes the old runner from a
    thread while calls go on."""
    config = make_config(model_repo, tmp_path / "audit.sqlite3", model={"runner": "process", "workers": 1})
    running = ServerThread(config).start()
    request = pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode((0, 200, 0)))])
    try:
        with grpc.insecure_channel(running.target) as channel:
            stub = running.stub(channel)
            assert stub.Classify(request, timeout=30).results[0].top_class == "ham"
            old = running.service.models.current.runner
            victim = old.pids[0]
            os.kill(victim, signal.SIGKILL)
            while victim in old.live_pids:  # a batch sent before the loop sees the death fails
                time.sleep(0.001)
            # Sent while the replacement loads (~0.5 s): it waits for it.
            after = stub.Classify(request, timeout=60).results[0]
            assert after.top_class == "ham", after.status
            assert old.pids[0] != victim
            publish_fake_version(model_repo)
            deadline = time.monotonic() + 30
            while (response := stub.Classify(request, timeout=30)).model_version != "2":
                assert response.results[0].top_class == "ham"
                assert time.monotonic() < deadline, "version 2 was never picked up"
            old_pids = old.pids
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in old_pids):
                assert time.monotonic() < deadline, "the old version's workers did not exit"
                time.sleep(0.1)
    finally:
        running.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
