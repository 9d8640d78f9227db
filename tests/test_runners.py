"""Runners: worker processes and threads give the same scores; a killed worker costs only its
batch and is replaced; work from a single gRPC channel reaches every worker."""

from __future__ import annotations

import os
import signal
import time

import grpc
import numpy as np
import pytest

from model.repository import latest_version_dir
from moderation_api.v1 import moderation_pb2 as pb
from server.config import ModelConfig
from server.decode import DecodeConfig
from server.runners import ProcessRunner, RunnerSpec, ThreadRunner
from tests.conftest import encode
from tests.harness import ServerThread, make_config


def spec(model_repo, workers: int) -> RunnerSpec:
    return RunnerSpec(str(latest_version_dir(model_repo, "moderation")), ModelConfig(workers=workers),
                      DecodeConfig(), warmup_batch=4)


def test_process_and_thread_runners_agree(model_repo):
    items = [encode((r, 255 - r, 40)) for r in range(0, 256, 32)] + [b"not an image"]
    process = ProcessRunner(spec(model_repo, 2))
    thread = ThreadRunner(spec(model_repo, 2))
    try:
        assert os.getpid() not in process.pids and len(set(process.pids)) == 2
        a, b = process.run(items), thread.run(items)
    finally:
        process.close()
        thread.close()
    for x, y in zip(a[:-1], b[:-1], strict=True):
        assert x.error is None and x.content_sha256 == y.content_sha256
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-6)
        assert x.batch_size == len(items) - 1
    assert a[-1].error[0] == "UNSUPPORTED_FORMAT" and b[-1].error == a[-1].error


def test_killed_worker_fails_only_its_batch_and_is_replaced(model_repo):
    runner = ProcessRunner(spec(model_repo, 1))
    try:
        victim = runner.pids[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)
        failed = runner.run([encode((255, 0, 0))])
        assert failed[0].error[0] == "INFERENCE_FAILED" and "died" in failed[0].error[1]
        again = runner.run([encode((255, 0, 0))])
        assert again[0].error is None and again[0].scores.argmax() == 1
        assert runner.pids[0] != victim
    finally:
        runner.close()


@pytest.mark.timeout(120)
def test_a_single_channel_uses_every_worker(model_repo, tmp_path):
    config = make_config(model_repo, tmp_path / "audit.sqlite3", model={"runner": "process", "workers": 2},
                         batch={"max_batch_size": 4, "max_queue_delay_ms": 1})
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
