"""Training survives a kill -9: the same command continues from the newest checkpoint, not from
step 0. And the input pipeline that makes this possible is a pure function of seed and epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.training_support import CLASSES, class_image, write_jsonl
from training import dataset_builder
from training.config import Config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    rows = []
    for label in CLASSES:
        for i in range(32):
            (root / f"{label}-{i}.png").write_bytes(class_image(label, i))
            rows.append(
                {"post_id": f"{label}-{i // 2}", "image_id": str(i), "image": f"{label}-{i}.png", "label": label}
            )
    export = write_jsonl(root / "export.jsonl", rows)
    out = root / "dataset"
    dataset_builder.build_dataset(
        out, [dataset_builder.Source("export", str(export))], Config.smoke(), log=lambda _: None
    )
    return out


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_resumes_from_the_checkpoint(dataset, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "training",
        "train",
        "--smoke",
        "--dataset",
        str(dataset),
        "--run",
        str(run),
        "--set",
        "train.epochs=6",
        "--set",
        "train.checkpoint_every_steps=3",
        "--set",
        "train.early_stopping_patience=100",
    ]
    manifest = dataset_builder.load_manifest(dataset)
    steps_per_epoch = -(-dataset_builder.split_size(manifest, "train") // Config.smoke().train.batch_size)
    total = 6 * steps_per_epoch

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and first.poll() is None:
            steps = (
                [int(p.name.removeprefix("ckpt-")) for p in (run / "checkpoints").glob("ckpt-*")]
                if (run / "checkpoints").is_dir()
                else []
            )
            if steps and max(steps) >= 2 * steps_per_epoch:
                break
            time.sleep(0.02)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    assert not (run / "done.json").exists()
    checkpoints = sorted(int(p.name.removeprefix("ckpt-")) for p in (run / "checkpoints").glob("ckpt-*"))
    newest = checkpoints[-1]
    assert 0 < newest < total

    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming from checkpoint ckpt-{newest:08d}" in second.stdout
    assert f"global step {newest}/{total}" in second.stdout
    assert "head from scratch" not in second.stdout
    # The epochs finished before the kill are not run (nor validated) again. (The last one may
    # be validated again if the kill fell between its last step and its validation.)
    assert "epoch 1/6:" not in second.stdout and "epoch 1/6 step" not in second.stdout
    assert "epoch 6/6:" in second.stdout
    done = json.loads((run / "done.json").read_text())
    assert done["resumed_from"] == newest and done["state"]["global_step"] == total
    assert [h["epoch"] for h in done["state"]["history"]] == [1, 2, 3, 4, 5, 6]
    assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((run / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    # Only complete checkpoints, and no temporary directories, are left.
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "training already finished" in again.stdout


def test_an_epoch_is_the_same_however_often_it_starts_and_skip_resumes_it(dataset):
    import tensorflow as tf

    from training import pipeline

    cfg = Config.smoke()
    manifest = dataset_builder.load_manifest(dataset)
    files = dataset_builder.split_files(dataset, "train", manifest)
    counts = [manifest["counts"]["train"][c] for c in CLASSES]

    def batches(epoch: int, skip: int = 0) -> list:
        ds = pipeline.train_dataset(files, counts, cfg, epoch)
        return [(x.numpy(), y.numpy(), w.numpy()) for x, y, w in (ds.skip(skip) if skip else ds)]

    one, two = batches(1), batches(1)
    assert len(one) == -(-sum(counts) // cfg.train.batch_size)
    for a, b in zip(one, two, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    resumed = batches(1, skip=2)
    assert all(np.array_equal(p, q) for p, q in zip(resumed[0], one[2], strict=True))
    other = batches(2)
    assert not np.array_equal(other[0][0], one[0][0])  # a new order and new augmentations
    # Balanced sampling: an epoch of the same length, every class drawn about equally often; the
    # sigmoid head gets one-hot targets.
    sampled = pipeline.train_dataset(
        files, counts, cfg.with_overrides(["train.balance=sampling", "train.head=sigmoid"]), 0
    )
    targets = np.concatenate([y.numpy() for _, y, _ in sampled])
    assert targets.shape == (sum(counts), len(CLASSES)) and set(np.unique(targets)) == {0.0, 1.0}
    assert np.all(targets.sum(axis=0) > sum(counts) / len(CLASSES) / 2)
    # Class weights average 1 over the examples and favour the rarer class.
    weights = pipeline.class_weights([10, 30, 0])
    assert weights[0] == pytest.approx(2.0) and weights[1] == pytest.approx(2 / 3) and weights[2] == 0
    assert tf.reduce_max(one[0][0]).numpy() <= 255 and one[0][0].dtype == np.uint8


def test_an_in_memory_epoch_is_the_same_however_often_it_starts_and_skip_resumes_it(dataset):
    from training import pipeline

    cfg = Config.smoke().with_overrides(["train.input=memory"])
    manifest = dataset_builder.load_manifest(dataset)
    source = pipeline.InMemory.load(dataset_builder.split_files(dataset, "train", manifest))
    counts = [manifest["counts"]["train"][c] for c in CLASSES]
    assert len(source.labels) == sum(counts) and source.images.shape[1:] == (64, 64, 3)

    def batches(epoch: int, skip: int = 0, config: Config = cfg) -> list:
        ds = pipeline.train_dataset(source, counts, config, epoch)
        return [(x.numpy(), y.numpy(), w.numpy()) for x, y, w in (ds.skip(skip) if skip else ds)]

    one, two = batches(1), batches(1)
    assert len(one) == -(-sum(counts) // cfg.train.batch_size)
    for a, b in zip(one, two, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    resumed = batches(1, skip=2)
    assert all(np.array_equal(p, q) for p, q in zip(resumed[0], one[2], strict=True))
    assert not np.array_equal(batches(2)[0][0], one[0][0])
    # Every image once per epoch, without augmentation exactly the stored pixels.
    plain = batches(0, config=cfg.with_overrides(["augment.enabled=false"]))
    seen = np.concatenate([x for x, _, _ in plain])
    assert sorted(map(bytes, seen.reshape(len(seen), -1))) == sorted(map(bytes, source.images.reshape(len(seen), -1)))
    sampled = batches(0, config=cfg.with_overrides(["train.balance=sampling", "train.head=softmax"]))
    labels = np.concatenate([y for _, y, _ in sampled])
    assert len(labels) == sum(counts) and np.all(np.bincount(labels) > sum(counts) / len(CLASSES) / 2)
