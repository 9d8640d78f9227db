"""Training from a built dataset, resumable: checkpoints every N steps, early stopping,
TensorBoard logs and a progress line with loss, accuracy and ETA.

    <run>/config.json            the config the run was started with (a resume must match it)
    <run>/checkpoints/ckpt-NNNNNNNN/   weights, optimizer state and loop state at global step N
    <run>/best.weights.npz       weights with the lowest early-stopping loss so far
    <run>/tensorboard/{train,validation}/   `tensorboard --logdir <run>/tensorboard`
    <run>/done.json              written when training has finished

A checkpoint directory is written under a temporary name and renamed, so a kill -9 at any
moment leaves only complete checkpoints; running the same command again continues from the
newest one: same epoch, same position in it (the input pipeline is a pure function of seed and
epoch, training/pipeline.py), same optimizer moments and learning-rate step, same
early-stopping state."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import dataset_builder, pipeline
from training.config import Config

CHECKPOINTS = "checkpoints"
BEST_WEIGHTS = "best.weights.npz"
DONE_FILE = "done.json"
CONFIG_FILE = "config.json"
_CKPT = re.compile(r"^ckpt-(\d{8})$")

Log = Callable[[str], None]


@dataclass
class LoopState:
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of that epoch already trained on
    global_step: int = 0
    best_loss: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> LoopState:
        state = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if state.best_loss is None:
            state.best_loss = float("inf")
        return state


@dataclass
class TrainResult:
    run_dir: Path
    weights: list[np.ndarray]  # best weights (float32), for model.network.build_model
    state: LoopState
    resumed_from: int  # global step the run resumed from (0: a fresh start)
    early_stopping_split: str
    precision: str


def resolve_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    # oneDNN capped below AVX-512 (ONEDNN_MAX_CPU_ISA=AVX2, say) emulates bfloat16 like a CPU
    # without it, whatever /proc/cpuinfo lists.
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and not isa.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")):
        return "float32"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    # Without native bfloat16 instructions mixed precision is emulated, and slower than float32.
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) else "float32"


def configure_tensorflow(seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:
        pass  # TensorFlow already initialised in this process; its settings stand
    keras.utils.set_random_seed(seed)


def build_float32_model(cfg: Config, weights: list[np.ndarray] | None = None) -> Any:
    """The network as served (float32), optionally with trained weights."""
    from model.network import build_model

    model = build_model(
        list(cfg.data.class_names), input_size=cfg.data.input_size, head=cfg.train.head, dropout=cfg.train.dropout
    )
    if weights is not None:
        model.set_weights(weights)
    return model


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _atomic_dir(final: Path, write: Callable[[Path], None]) -> None:
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    for path in tmp.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def _atomic_file(final: Path, write: Callable[[Path], None]) -> None:
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _CKPT.match(entry.name)
        if match and (entry / "state.json").is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(run_dir: Path, model: Any, optimizer: Any, state: LoopState, keep: int) -> Path:
    final = run_dir / CHECKPOINTS / f"ckpt-{state.global_step:08d}"

    def write(tmp: Path) -> None:
        _save_arrays(tmp / "model.npz", model.get_weights())
        _save_arrays(tmp / "optimizer.npz", [np.asarray(v.numpy()) for v in optimizer.variables])
        (tmp / "state.json").write_text(json.dumps(state.to_dict()) + "\n")

    final.parent.mkdir(parents=True, exist_ok=True)
    _atomic_dir(final, write)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore_checkpoint(path: Path, model: Any, optimizer: Any) -> LoopState:
    model.set_weights(_load_arrays(path / "model.npz"))
    values = _load_arrays(path / "optimizer.npz")
    variables = list(optimizer.variables)
    if len(values) != len(variables):
        raise RuntimeError(f"{path}: {len(values)} optimizer variables saved, the optimizer has {len(variables)}")
    for var, value in zip(variables, values, strict=True):
        var.assign(value)
    return LoopState.from_dict(json.loads((path / "state.json").read_text()))


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A live bar on a terminal; otherwise one line every `every_s` seconds (CI logs)."""

    def __init__(self, log: Log, total_steps: int, every_s: float, stream=None) -> None:
        self.log = log
        self.total = total_steps
        self.every_s = every_s
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.start_step = None
        self.last = 0.0

    def update(
        self,
        epoch: int,
        epochs: int,
        step_in_epoch: int,
        steps_per_epoch: int,
        global_step: int,
        loss: float,
        accuracy: float,
    ) -> None:
        now = time.monotonic()
        if self.start_step is None:
            # The first step of a (re)started run includes graph tracing: the rate starts after it.
            self.start_step, self.start = global_step, now
        text = f"epoch {epoch + 1}/{epochs} step {step_in_epoch}/{steps_per_epoch} loss {loss:.4f} acc {accuracy:.3f}"
        if global_step > self.start_step:
            rate = (global_step - self.start_step) / max(now - self.start, 1e-6)
            eta_epoch = (steps_per_epoch - step_in_epoch) / rate
            eta_run = (self.total - global_step) / rate
            text += f" | {rate:.2f} steps/s, ETA epoch {_clock(eta_epoch)}, run <= {_clock(eta_run)}"
        if self.tty:
            done = int(30 * step_in_epoch / max(1, steps_per_epoch))
            self.stream.write(f"\r[{'=' * done}{'.' * (30 - done)}] {text}\033[K")
            self.stream.flush()
            if step_in_epoch == steps_per_epoch:
                self.stream.write("\n")
        elif now - self.last >= self.every_s or step_in_epoch == steps_per_epoch:
            self.last = now
            self.log(text)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


def _scalar(name: str, value: float) -> None:
    """A TensorBoard scalar through TensorFlow's core summary op: tf.summary.scalar lives in the
    tensorboard package, which is only needed to view the logs (`pip install tensorboard`)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


# ---------------------------------------------------------------------------------------------
# The loop


def _training_fingerprint(cfg: Config, manifest: dict) -> dict:
    # What a resumed run must share with the interrupted one; eval/promote settings do not
    # change training and may differ.
    data = cfg.to_dict()
    return {
        "data": data["data"],
        "augment": data["augment"],
        "train": data["train"],
        "dataset_labels_sha256": manifest["labels_sha256"],
        "dataset_eval_split_id": manifest["split"]["eval_split_id"],
    }


def prepare_run_dir(run_dir: Path, cfg: Config, manifest: dict, restart: bool) -> None:
    fingerprint = _training_fingerprint(cfg, manifest)
    config_path = run_dir / CONFIG_FILE
    if restart and run_dir.exists():
        for name in (CHECKPOINTS, "tensorboard"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        for name in (BEST_WEIGHTS, DONE_FILE, CONFIG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        if previous.get("fingerprint") != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(
                f"{run_dir} holds a run with other settings or data ({', '.join(changed)} differ); "
                "resume with the same ones, use another run directory, or --restart"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_file(
        config_path,
        lambda p: p.write_text(json.dumps({"config": cfg.to_dict(), "fingerprint": fingerprint}, indent=2) + "\n"),
    )


def train(
    dataset_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    cfg: Config,
    log: Log = print,
    restart: bool = False,
) -> TrainResult:
    """Trains (or resumes training) on the dataset's train split; returns the best weights."""
    run_dir = Path(run_dir)
    manifest = dataset_builder.load_manifest(dataset_dir)
    if tuple(manifest["class_names"]) != tuple(cfg.data.class_names) or manifest["input_size"] != cfg.data.input_size:
        raise ValueError(
            f"dataset {dataset_dir} has classes {manifest['class_names']} at {manifest['input_size']} "
            f"pixels; the config says {list(cfg.data.class_names)} at {cfg.data.input_size}"
        )
    prepare_run_dir(run_dir, cfg, manifest, restart)
    precision = resolve_precision(cfg.train.precision)
    stop_split = "validation" if dataset_builder.split_size(manifest, "validation") else "eval"
    done_path = run_dir / DONE_FILE
    if done_path.is_file():
        state = LoopState.from_dict(json.loads(done_path.read_text())["state"])
        log(f"{run_dir}: training already finished at step {state.global_step}; using its best weights")
        return TrainResult(
            run_dir, _load_arrays(run_dir / BEST_WEIGHTS), state, state.global_step, stop_split, precision
        )

    configure_tensorflow(cfg.data.seed)
    import keras
    import tensorflow as tf

    from model.network import build_model

    t = cfg.train
    class_names = list(cfg.data.class_names)
    counts = [int(manifest["counts"]["train"][c]) for c in class_names]
    n_train = sum(counts)
    steps_per_epoch = max(1, -(-n_train // t.batch_size))
    total_steps = steps_per_epoch * t.epochs
    train_source: pipeline.Source = dataset_builder.split_files(dataset_dir, "train", manifest)
    stop_source: pipeline.Source = dataset_builder.split_files(dataset_dir, stop_split, manifest)
    if t.input == "memory":
        started = time.monotonic()
        train_source, stop_source = pipeline.InMemory.load(train_source), pipeline.InMemory.load(stop_source)
        log(f"train and {stop_split} splits decoded into memory ({time.monotonic() - started:.1f}s)")

    policy = keras.mixed_precision.global_policy()
    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(class_names, input_size=cfg.data.input_size, head=t.head, dropout=t.dropout)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    warmup = round(t.warmup_fraction * total_steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=t.learning_rate * (0.1 if warmup else 1.0),
        decay_steps=max(1, total_steps - warmup),
        alpha=t.min_lr_fraction,
        warmup_target=t.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.BinaryCrossentropy() if t.head == "sigmoid" else keras.losses.SparseCategoricalCrossentropy()

    state = LoopState()
    resumed_from = 0
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        _, path = checkpoints[-1]
        state = restore_checkpoint(path, model, optimizer)
        resumed_from = state.global_step
        log(
            f"resuming from checkpoint {path.name}: epoch {state.epoch + 1}, step {state.step_in_epoch}/"
            f"{steps_per_epoch} of it, global step {state.global_step}/{total_steps}"
        )
    else:
        log(
            f"training {t.head} head from scratch: {n_train} images {dict(zip(class_names, counts, strict=True))}, "
            f"{steps_per_epoch} steps/epoch x {t.epochs} epochs, batch {t.batch_size}, {precision}, "
            f"balance={t.balance}, early stopping on {stop_split}"
        )

    def correct(y, pred):
        truth = tf.argmax(y, axis=-1, output_type=tf.int32) if t.head == "sigmoid" else tf.cast(y, tf.int32)
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), truth), tf.float32))

    @tf.function(reduce_retracing=True)
    def train_step(x, y, w):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = loss_fn(y, pred, sample_weight=w)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, correct(y, pred)

    @tf.function(reduce_retracing=True)
    def eval_step(x, y):
        pred = model(x, training=False)
        if t.head == "sigmoid":
            per_example = keras.losses.binary_crossentropy(y, pred)
        else:
            per_example = keras.losses.sparse_categorical_crossentropy(y, pred)
        return tf.reduce_sum(per_example), correct(y, pred)

    writers = {
        name: tf.summary.create_file_writer(os.fspath(run_dir / "tensorboard" / name))
        for name in ("train", "validation")
    }
    progress = Progress(log, total_steps, t.log_every_s)
    run_start = time.monotonic() - state.train_seconds

    def checkpoint() -> None:
        state.train_seconds = time.monotonic() - run_start
        save_checkpoint(run_dir, model, optimizer, state, t.keep_checkpoints)

    while state.epoch < t.epochs and not state.stopped_early:
        epoch = state.epoch
        batches = pipeline.train_dataset(train_source, counts, cfg, epoch)
        if state.step_in_epoch:
            batches = batches.skip(state.step_in_epoch)
        loss_sum = correct_sum = seen = 0.0
        for x, y, w in batches:
            loss, right = train_step(x, y, w)
            state.step_in_epoch += 1
            state.global_step += 1
            batch = int(x.shape[0])
            loss_sum += float(loss) * batch
            correct_sum += float(right)
            seen += batch
            progress.update(
                epoch,
                t.epochs,
                state.step_in_epoch,
                steps_per_epoch,
                state.global_step,
                loss_sum / seen,
                correct_sum / seen,
            )
            if state.global_step % t.tensorboard_every_steps == 0:
                with writers["train"].as_default(step=state.global_step):
                    _scalar("loss", float(loss))
                    _scalar("accuracy", float(right) / batch)
                    _scalar("learning_rate", float(schedule(optimizer.iterations)))
            if state.global_step % t.checkpoint_every_steps == 0:
                checkpoint()

        total_loss = total_right = n = 0.0
        for x, y, _ in pipeline.eval_dataset(stop_source, cfg):
            batch_loss, right = eval_step(x, y)
            total_loss += float(batch_loss)
            total_right += float(right)
            n += int(x.shape[0])
        val_loss, val_acc = total_loss / max(n, 1), total_right / max(n, 1)
        with writers["validation"].as_default(step=state.global_step):
            _scalar("loss", val_loss)
            _scalar("accuracy", val_acc)
        improved = val_loss < state.best_loss - t.early_stopping_min_delta
        state.history.append(
            {
                "epoch": epoch + 1,
                "step": state.global_step,
                "train_loss": loss_sum / max(seen, 1) if seen else None,
                "train_accuracy": correct_sum / max(seen, 1) if seen else None,
                f"{stop_split}_loss": val_loss,
                f"{stop_split}_accuracy": val_acc,
            }
        )
        if improved:
            state.best_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
            _atomic_file(run_dir / BEST_WEIGHTS, lambda p: _save_arrays(p, model.get_weights()))
        else:
            state.bad_epochs += 1
        log(
            f"epoch {epoch + 1}/{t.epochs}: {stop_split} loss {val_loss:.4f} accuracy {val_acc:.4f}"
            + (" (best so far)" if improved else f" (no improvement for {state.bad_epochs} epoch(s))")
        )
        state.epoch, state.step_in_epoch = epoch + 1, 0
        if state.bad_epochs >= t.early_stopping_patience and state.epoch < t.epochs:
            state.stopped_early = True
            log(
                f"early stopping: {stop_split} loss has not improved for {state.bad_epochs} epochs; "
                f"keeping epoch {state.best_epoch + 1}"
            )
        checkpoint()

    for writer in writers.values():
        writer.flush()
    state.train_seconds = time.monotonic() - run_start
    _atomic_file(
        done_path,
        lambda p: p.write_text(json.dumps({"state": state.to_dict(), "resumed_from": resumed_from}, indent=2) + "\n"),
    )
    return TrainResult(run_dir, _load_arrays(run_dir / BEST_WEIGHTS), state, resumed_from, stop_split, precision)
