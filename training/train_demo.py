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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.repository import list_versions
from training import demo_data
from training.dataset import decode_files, split_by_post

BENIGN_CLASS = "ham"
HELD_OUT_FRACTION = 0.2
LEARNING_RATE = 1e-3
BATCH_SIZE = 64
DEMO_WARNING = (
    "demo model trained on synthetic images only; its 'sexual' class detects a synthetic "
    "stand-in (large smooth skin-tone blobs), not real sexual content"
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


class StepLog:
    """One line per step, each with the seconds since the run started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {message}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m training.train_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument("--name", default="moderation", help="model name inside the repository")
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run for tests")
    parser.add_argument("--per-class", type=int, help="images per class (default 1200, smoke 40)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 8, smoke 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--data-dir", type=Path, help="where the demo images go (default data/demo/...)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for data work")
    parser.add_argument("--if-missing", action="store_true", help="do nothing if a version exists already")
    args = parser.parse_args(argv)
    per_class = args.per_class or (40 if args.smoke else 1200)
    epochs = args.epochs or (1 if args.smoke else 8)
    data_dir = args.data_dir or Path("data") / "demo" / f"seed{args.seed}-n{per_class}"
    if per_class < 2 or epochs < 1:
        parser.error("--per-class must be >= 2 and --epochs >= 1")
    return RunConfig(
        args.models, args.name, per_class, epochs, args.seed, args.input_size, data_dir, args.workers, args.if_missing
    )


def configure_tensorflow(seed: int) -> None:
    """Quiet logs, every core, reproducible initial weights and shuffling."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    cores = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    keras.utils.set_random_seed(seed)


def train(cfg: RunConfig, log: StepLog) -> Path:
    labels_csv = demo_data.write_demo_dataset(cfg.data_dir, cfg.per_class, seed=cfg.seed, workers=cfg.workers)
    rows = demo_data.read_labels(labels_csv)
    log(f"demo data: {len(rows)} images {demo_data.class_counts(rows)} in {cfg.data_dir}")

    class_names = list(demo_data.CLASS_NAMES)
    images = decode_files([r.path for r in rows], cfg.input_size, workers=cfg.workers)
    labels = np.array([class_names.index(r.label) for r in rows])
    train_idx, held_idx = split_by_post([r.post_id for r in rows], labels, HELD_OUT_FRACTION, cfg.seed)
    log(f"decoded with server.decode to {images.shape[1:]}; split by post: {len(train_idx)} train, "
        f"{len(held_idx)} held out")

    # TensorFlow is imported only now: the data steps above start worker processes, and
    # --if-missing runs should not pay for the import at all.
    configure_tensorflow(cfg.seed)
    import keras

    from model.export import export_version
    from model.network import build_model
    from model.repository import ModelMetadata
    from training.metrics import classification_report, score_histograms
    from training.thresholds import choose_thresholds

    model = build_model(class_names, input_size=cfg.input_size)
    steps = cfg.epochs * int(np.ceil(len(train_idx) / BATCH_SIZE))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA halves training speed on CPU for this network
    )
    x_held, y_held = images[held_idx], labels[held_idx]

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {logs.get('loss', float('nan')):.4f} "
                f"accuracy {logs.get('accuracy', float('nan')):.4f}")

    train_start = time.monotonic()
    model.fit(
        images[train_idx],
        labels[train_idx],
        batch_size=BATCH_SIZE,
        epochs=cfg.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochLog()],
    )
    train_seconds = time.monotonic() - train_start

    scores = model.predict(x_held, batch_size=128, verbose=0)
    evaluation = classification_report(scores, y_held, class_names)
    thresholds, threshold_report = choose_thresholds(scores, y_held, class_names, BENIGN_CLASS)
    evaluation["thresholds"] = threshold_report
    evaluation["split"] = "held-out posts"
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
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        training={
            "warning": DEMO_WARNING,
            "data": {
                "source": "training.demo_data",
                "generator_version": demo_data.GENERATOR_VERSION,
                "per_class": cfg.per_class,
                "class_counts": demo_data.class_counts(rows),
                "train_examples": int(len(train_idx)),
                "held_out_examples": int(len(held_idx)),
                "held_out_fraction": HELD_OUT_FRACTION,
                "split": "by post, stratified by class",
            },
            "epochs": cfg.epochs,
            "batch_size": BATCH_SIZE,
            "optimizer": f"adam, lr {LEARNING_RATE} cosine decay",
            "seed": cfg.seed,
            "seconds": round(train_seconds, 1),
        },
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
    print(f"held-out accuracy: {metadata.evaluation['accuracy']:.4f} "
          f"(version {metadata.version}, {log.elapsed:.0f}s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
