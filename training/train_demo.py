"""Builds the demo model from generated data and publishes it to the model repository.

    python -m training.train_demo --models models --name moderation [--smoke] [--if-missing]

Steps: generate demo images (training/demo_data.py) -> decode them with the server's decoder ->
split by post -> train -> evaluate on the held-out posts -> choose per-class thresholds ->
export (SavedModel + ONNX + metadata) as the next version. The result detects the demo's
synthetic stand-ins, not real content; see training/demo_data.py."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.repository import list_versions
from training import demo_data
from training.dataset import decode_files, split_by_post

BENIGN_CLASS = "ham"
HELD_OUT_FRACTION = 0.2
LEARNING_RATE = 1e-3
# Batch 32 and dropout 0.3 rather than 64 and the network's 0.5: the run is short, and more
# updates of a less regularised model learned more in the same minutes on this data.
BATCH_SIZE = 32
DROPOUT = 0.3
DEFAULT_PER_CLASS, DEFAULT_EPOCHS = 1200, 10
SMOKE_PER_CLASS, SMOKE_EPOCHS = 40, 1
DEMO_WARNING = (
    "demo model trained on synthetic images only; its 'sexual' class detects a synthetic "
    "stand-in (large smooth skin-tone blobs), not real sexual content; its 'personal_info' "
    "class detects contact-card layouts and misses most bare lines of text"
)


@dataclass(frozen=True)
class RunConfig:
    models: Path
    name: str
    per_class: int
    epochs: int
    seed: int
    input_size: int
    data_dir: Path
    workers: int
    if_missing: bool
    precision: str


@dataclass
class DemoData:
    rows: list[demo_data.LabelledImage]
    images: np.ndarray  # uint8 [N, size, size, 3], as the server decodes them
    labels: np.ndarray  # int [N], indices into CLASS_NAMES
    train_idx: np.ndarray
    held_idx: np.ndarray


class StepLog:
    """One line per step, each with the seconds since the run started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {message}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m training.train_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument("--name", default="moderation", help="model name inside the repository")
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run for tests")
    parser.add_argument(
        "--per-class", type=int, help=f"images per class ({DEFAULT_PER_CLASS}; smoke {SMOKE_PER_CLASS})"
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs ({DEFAULT_EPOCHS}; smoke {SMOKE_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--data-dir", type=Path, help="where the demo images go (default data/demo/...)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for data work")
    parser.add_argument("--if-missing", action="store_true", help="do nothing if a version exists already")
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="training arithmetic; auto: bfloat16 where the CPU has native support (the exported "
        "model is float32 either way)",
    )
    args = parser.parse_args(argv)
    per_class = args.per_class or (SMOKE_PER_CLASS if args.smoke else DEFAULT_PER_CLASS)
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else DEFAULT_EPOCHS)
    if per_class < 2 or epochs < 1:
        parser.error("--per-class must be >= 2 and --epochs >= 1")
    return RunConfig(
        models=args.models,
        name=args.name,
        per_class=per_class,
        epochs=epochs,
        seed=args.seed,
        input_size=args.input_size,
        data_dir=args.data_dir or Path("data") / "demo" / f"seed{args.seed}-n{per_class}",
        workers=args.workers,
        if_missing=args.if_missing,
        precision=resolve_precision(args.precision),
    )


def resolve_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    # Without native bfloat16 instructions mixed precision is emulated, and slower than float32.
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) else "float32"


def prepare_data(cfg: RunConfig, log: StepLog) -> DemoData:
    labels_csv = demo_data.write_demo_dataset(cfg.data_dir, cfg.per_class, seed=cfg.seed, workers=cfg.workers)
    rows = demo_data.read_labels(labels_csv)
    log(f"demo data: {len(rows)} images {demo_data.class_counts(rows)} in {cfg.data_dir}")
    images = decode_files([r.path for r in rows], cfg.input_size, workers=cfg.workers)
    labels = np.array([demo_data.CLASS_NAMES.index(r.label) for r in rows])
    train_idx, held_idx = split_by_post([r.post_id for r in rows], labels, HELD_OUT_FRACTION, cfg.seed)
    log(
        f"decoded with model.preprocess to {images.shape[1:]}; split by post: {len(train_idx)} train, "
        f"{len(held_idx)} held out"
    )
    return DemoData(rows, images, labels, train_idx, held_idx)


def configure_tensorflow(seed: int) -> None:
    """Quiet logs, every core, reproducible initial weights and shuffling."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:
        pass  # TensorFlow already running in this process (a caller's); its settings stand
    keras.utils.set_random_seed(seed)


def fit(cfg: RunConfig, data: DemoData, log: StepLog) -> Any:
    """Trains and returns a float32 keras.Model, whatever precision it was trained in."""
    import keras

    from model.network import build_model

    class_names = list(demo_data.CLASS_NAMES)
    policy = keras.mixed_precision.global_policy()
    if cfg.precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(class_names, input_size=cfg.input_size, dropout=DROPOUT)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    steps = cfg.epochs * int(np.ceil(len(data.train_idx) / BATCH_SIZE))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA runs this network at half the speed on CPU
    )

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            loss, accuracy = (float((logs or {}).get(k, "nan")) for k in ("loss", "accuracy"))
            log(f"epoch {epoch + 1}/{cfg.epochs} ({cfg.precision}): loss {loss:.4f} accuracy {accuracy:.4f}")

    model.fit(
        data.images[data.train_idx],
        data.labels[data.train_idx],
        batch_size=BATCH_SIZE,
        epochs=cfg.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochLog()],
    )
    if cfg.precision == "float32":
        return model
    # The served model computes in float32; evaluating and exporting that one keeps the held-out
    # figures and thresholds true of what the server will run.
    served = build_model(class_names, input_size=cfg.input_size, dropout=DROPOUT)
    served.set_weights(model.get_weights())
    return served


def training_summary(cfg: RunConfig, data: DemoData, seconds: float) -> dict[str, Any]:
    return {
        "warning": DEMO_WARNING,
        "data": {
            "source": "training.demo_data",
            "generator_version": demo_data.GENERATOR_VERSION,
            "per_class": cfg.per_class,
            "class_counts": demo_data.class_counts(data.rows),
            "train_examples": len(data.train_idx),
            "held_out_examples": len(data.held_idx),
            "held_out_fraction": HELD_OUT_FRACTION,
            "split": "by post, stratified by class",
        },
        "epochs": cfg.epochs,
        "batch_size": BATCH_SIZE,
        "dropout": DROPOUT,
        "optimizer": f"adam, learning rate {LEARNING_RATE} with cosine decay",
        "precision": cfg.precision,
        "seed": cfg.seed,
        "seconds": round(seconds, 1),
    }


def train(cfg: RunConfig, log: StepLog) -> Path:
    """Runs every step and returns the published version directory."""
    data = prepare_data(cfg, log)
    # TensorFlow is imported only now: the data steps above start worker processes, and
    # --if-missing runs should not pay for the import at all.
    configure_tensorflow(cfg.seed)
    from model.export import export_version
    from model.repository import ModelMetadata
    from training.metrics import classification_report, score_histograms
    from training.thresholds import choose_thresholds

    class_names = list(demo_data.CLASS_NAMES)
    start = time.monotonic()
    model = fit(cfg, data, log)
    train_seconds = time.monotonic() - start

    x_held, y_held = data.images[data.held_idx], data.labels[data.held_idx]
    scores = model.predict(x_held, batch_size=128, verbose=0)
    evaluation = classification_report(scores, y_held, class_names)
    thresholds, threshold_report = choose_thresholds(scores, y_held, class_names, BENIGN_CLASS)
    evaluation.update(split="held-out posts", thresholds=threshold_report)
    aucs = ", ".join(f"{c} {m['auc']:.4f}" for c, m in evaluation["per_class"].items())
    log(f"held-out accuracy {evaluation['accuracy']:.4f}; AUC {aucs}; thresholds {thresholds}")

    metadata = ModelMetadata(
        name=cfg.name,
        version=0,  # export_version sets the published number
        class_names=class_names,
        input_size=cfg.input_size,
        head="softmax",
        benign_class=BENIGN_CLASS,
        thresholds=thresholds,
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        training=training_summary(cfg, data, train_seconds),
        evaluation=evaluation,
        score_baseline={"source": "held-out posts", **score_histograms(scores, class_names)},
    )
    version_dir = export_version(model, metadata, cfg.models, cfg.name, check_with=x_held[:32])
    log(f"exported {version_dir}")
    return version_dir


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    log = StepLog()
    existing = list_versions(cfg.models, cfg.name)
    if cfg.if_missing and existing:
        log(f"{cfg.models / cfg.name} already has version(s) {existing}; nothing to do")
        return 0
    version_dir = train(cfg, log)
    from model.repository import load_metadata

    metadata = load_metadata(version_dir)
    print(
        f"held-out accuracy: {metadata.evaluation['accuracy']:.4f} "
        f"(version {metadata.version} in {version_dir}, {log.elapsed:.0f}s in all)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
