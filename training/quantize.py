"""Opt-in int8: adds a statically quantised copy of a published version's ONNX model, and the
evidence of what it costs, to that version.

    python -m training quantize [VERSION_DIR] [--models M --name N] [--calibration-images 200]
                                [--auc-margin 0.005] [--format qdq|qoperator] [--demo-data DIR]
                                [--dataset DIR] [--speed-seconds 4]

VERSION_DIR defaults to the newest version of --name under --models. Steps: find the version's
evaluation images and, apart from them, calibration images (below) -> quantize model.onnx with
ONNX Runtime's static quantization (per-channel int8 weights, uint8 activations, min/max
calibration) into model.int8.onnx -> score the evaluation images with both files, as the
server's ONNX engine runs them (ONNX Runtime on the CPU, one thread) -> per-class ROC AUC of
each -> a short side-by-side speed measurement, one thread each -> metadata.json
`engines.onnx_int8` (model.repository.Int8Entry), rewritten atomically (the version may be
served meanwhile). The int8 file is `accepted` only if no class's AUC is more than the margin
below the float32 file's; a refused one is still recorded (with the reasons) but the server's
`onnx_int8` engine will not open it (server/serving/engines/__init__.py).

Where the images come from, in this order:

- a version made by the training pipeline (`make model`, `make train`: training/retrain.py)
  records its dataset directory and its frozen evaluation split's id: the dataset (--dataset,
  else the recorded directory, else data/datasets/<name>) provides its `eval` split for
  evaluation and its `train` split for calibration, if its split id still matches;
- a version made by the earlier demo trainer (training.train_demo, before it became the `demo`
  config) records the demo data's seed, size and held-out fraction: the demo images are
  regenerated (or reused from data/demo/) and split by post exactly as it split them;
  evaluation uses the held-out posts, calibration a sample of the training posts;
- otherwise demo images are generated deterministically (seed FALLBACK_SEED, so not the default
  demo model's training images) and split by post into calibration and evaluation halves.

The exit status is 0 when the int8 file was accepted, 3 when it was refused (recorded), 2 on bad
input."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.repository import (
    INPUT_NAME,
    INT8_FILE,
    OUTPUT_NAME,
    Int8Entry,
    ModelMetadata,
    file_sha256,
    latest_version_dir,
    load_metadata,
    replace_file,
    update_metadata,
)

ENGINE_KEY = "onnx_int8"
# The same tolerance the promotion rules give a retrained model (training/config.py
# PromoteConfig.max_auc_drop): int8 may cost no more than a new version may.
DEFAULT_AUC_MARGIN = 0.005
DEFAULT_CALIBRATION_IMAGES = 200
FORMATS = ("qdq", "qoperator")
# Measured on the demo model (docs/retraining.md#int8): see there for the figures.
DEFAULT_FORMAT = "qdq"
DEFAULT_SPEED_SECONDS = 4.0
# The server's default largest batch (server/config.py BatchConfig.max_batch_size).
SPEED_BATCH = 8
FALLBACK_SEED = 1
FALLBACK_PER_CLASS = 200
EXIT_REFUSED = 3

Log = Callable[[str], None]


@dataclass
class QuantizationImages:
    eval_images: np.ndarray  # uint8 [N, S, S, 3]
    eval_labels: np.ndarray  # int [N], indices into the version's class_names
    calibration: np.ndarray  # uint8 [M, S, S, 3], none of them among eval_images
    source: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Images


def find_images(
    version: Path,
    metadata: ModelMetadata,
    calibration_images: int,
    demo_data: Path | None = None,
    dataset: Path | None = None,
    log: Log = print,
) -> QuantizationImages:
    """The version's evaluation images and calibration images (module docstring)."""
    data = (metadata.training or {}).get("data") or {}
    recorded = (metadata.training or {}).get("dataset") or {}
    split_id = recorded.get("eval_split_id")
    if dataset is not None or split_id:
        if dataset is not None:
            candidates = [dataset]
        else:
            # The directory the version recorded may be relative to where it was trained, or gone.
            candidates = [Path(recorded["path"])] if recorded.get("path") else []
            candidates.append(Path("data/datasets") / metadata.name)
        for directory in dict.fromkeys(candidates):
            found = _pipeline_images(metadata, directory, split_id, calibration_images, log)
            if found is not None:
                return found
    elif data.get("source") == "training.demo_data":
        from training import demo_data as demo

        if data.get("generator_version") != demo.GENERATOR_VERSION:
            log(
                f"{version} was trained on demo images of generator version {data.get('generator_version')}, "
                f"this code makes version {demo.GENERATOR_VERSION}: its held-out images cannot be regenerated"
            )
        else:
            seed, per_class = int((metadata.training or {}).get("seed", 0)), int(data["per_class"])
            out = demo_data or Path("data/demo") / f"seed{seed}-n{per_class}"
            return _demo_images(
                metadata,
                out,
                per_class,
                seed,
                float(data["held_out_fraction"]),
                calibration_images,
                "held-out posts of the version's own demo data (as training split them)",
                log,
            )
    out = demo_data or Path("data/demo") / f"seed{FALLBACK_SEED}-n{FALLBACK_PER_CLASS}"
    log(f"no evaluation set recorded for {version}: generating demo images (seed {FALLBACK_SEED})")
    return _demo_images(
        metadata,
        out,
        FALLBACK_PER_CLASS,
        FALLBACK_SEED,
        0.5,
        calibration_images,
        "generated demo images, split by post (the version records no usable evaluation set)",
        log,
    )


def _demo_images(
    metadata: ModelMetadata,
    out: Path,
    per_class: int,
    seed: int,
    held_out_fraction: float,
    calibration_images: int,
    description: str,
    log: Log,
) -> QuantizationImages:
    from training import demo_data as demo
    from training.dataset_builder import decode_files, split_by_post

    if set(metadata.class_names) != set(demo.CLASS_NAMES):
        raise ValueError(
            f"classes {list(metadata.class_names)} are not the demo data's {list(demo.CLASS_NAMES)}: "
            "give --dataset with the version's dataset"
        )
    labels_csv = demo.write_demo_dataset(out, per_class, seed=seed)
    rows = demo.read_labels(labels_csv)
    # Indexed by the model's class order, which need not be the generator's.
    labels = np.array([metadata.class_names.index(r.label) for r in rows])
    # The generator's class order, as training saw it: split_by_post's draws depend on it.
    demo_labels = [demo.CLASS_NAMES.index(r.label) for r in rows]
    train_idx, held_idx = split_by_post([r.post_id for r in rows], demo_labels, held_out_fraction, seed)
    calib_idx = _sample(train_idx, calibration_images, seed)
    # Only the images used are decoded: the demo set's training side is four times the rest.
    images = decode_files([rows[i].path for i in np.r_[held_idx, calib_idx]], metadata.input_size)
    log(f"demo images in {out}: {len(held_idx)} for evaluation, {len(calib_idx)} for calibration")
    return QuantizationImages(
        images[: len(held_idx)],
        labels[held_idx],
        images[len(held_idx) :],
        {
            "kind": "demo",
            "description": description,
            "path": os.fspath(out),
            "seed": seed,
            "per_class": per_class,
            "held_out_fraction": held_out_fraction,
        },
    )


def _pipeline_images(
    metadata: ModelMetadata, dataset: Path, split_id: str | None, calibration_images: int, log: Log
) -> QuantizationImages | None:
    from training import dataset_builder, pipeline

    try:
        manifest = dataset_builder.load_manifest(dataset)
    except FileNotFoundError:
        log(f"no dataset at {dataset}")
        return None
    have = manifest["split"]["eval_split_id"]
    if split_id and have != split_id:
        log(f"{dataset} has evaluation split {have[:12]}, the version was evaluated on {split_id[:12]}")
        return None
    if list(manifest["class_names"]) != list(metadata.class_names):
        log(f"{dataset} has classes {manifest['class_names']}, the version {list(metadata.class_names)}")
        return None
    eval_images, eval_labels = pipeline.load_arrays(dataset_builder.split_files(dataset, "eval", manifest))
    train_images, _ = pipeline.load_arrays(dataset_builder.split_files(dataset, "train", manifest))
    if len(eval_labels) == 0 or len(train_images) == 0:
        log(f"{dataset} has an empty evaluation or training split")
        return None
    calibration = train_images[_sample(np.arange(len(train_images)), calibration_images, 0)]
    log(f"dataset {dataset}: {len(eval_labels)} evaluation images, {len(calibration)} for calibration")
    return QuantizationImages(
        eval_images,
        eval_labels,
        calibration,
        {
            "kind": "dataset",
            "description": "the frozen evaluation split",
            "path": os.fspath(dataset),
            "eval_split_id": have,
        },
    )


def _sample(indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    indices = np.asarray(indices)
    if count >= len(indices):
        return indices
    return np.sort(np.random.default_rng([seed, 8]).choice(indices, count, replace=False))


# ---------------------------------------------------------------------------------------------
# Quantization


def quantize_onnx(
    source: Path,
    target: Path,
    calibration: np.ndarray,
    fmt: str = DEFAULT_FORMAT,
    per_channel: bool = True,
    reduce_range: bool = False,
) -> dict[str, Any]:
    """Writes the statically quantised `source` to `target`; returns the settings used."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if len(calibration) == 0:
        raise ValueError("no calibration images")
    model = onnx.load(os.fspath(source))
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    # The output layer and its softmax/sigmoid stay float: quantised scores would take only 256
    # values, which ties images in the ranking (AUC) and moves them across the thresholds, for
    # a layer of a few hundred multiply-adds.
    head = next(n for n in model.graph.node if OUTPUT_NAME in n.output)
    logits = next(n for n in model.graph.node if head.input[0] in n.output)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(np.array_split(calibration, max(1, math.ceil(len(calibration) / 32))))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.uint8)}

    # The calibrator writes an augmented copy of the model; keep it out of the version directory.
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        tmp_source = Path(scratch) / "named.onnx"
        onnx.save_model(model, os.fspath(tmp_source))
        quantize_static(
            os.fspath(tmp_source),
            os.fspath(target),
            Reader(),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel,
            reduce_range=reduce_range,
            # uint8 activations with int8 weights is the combination x86 kernels (AVX2,
            # AVX-512 VNNI) run natively.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[head.name, logits.name],
        )
    return {
        "format": fmt,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "activations": "uint8",
        "weights": "int8",
        "calibration_method": "minmax",
        "float_nodes": [logits.op_type, head.op_type],
    }


# ---------------------------------------------------------------------------------------------
# Evaluation and speed


class _Session:
    """One ONNX Runtime session set up as the server's ONNX engine sets its own up
    (server/serving/engines/onnx_engine.py: every graph optimisation, sequential execution),
    on one thread. The quantizer is a training tool and does not import the server."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.uint8)})[0]


def score(path: Path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Scores as the server computes them: ONNX Runtime, one thread."""
    session = _Session(path)
    out = [session.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def per_class_auc(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    from training.metrics import roc_auc

    return {name: roc_auc(scores[labels == c, c], scores[labels != c, c]) for c, name in enumerate(class_names)}


def judge(auc_fp32: dict[str, float], auc_int8: dict[str, float], margin: float) -> tuple[float, list[str]]:
    """(largest AUC drop over the classes, reasons to refuse: empty when accepted)."""
    reasons = []
    drops = {}
    for name, before in auc_fp32.items():
        after = auc_int8.get(name, float("nan"))
        if not (math.isfinite(before) and math.isfinite(after)):
            reasons.append(f"{name}: AUC not measurable (float32 {before}, int8 {after})")
            continue
        drops[name] = before - after
        if drops[name] > margin:
            reasons.append(f"{name}: AUC {before:.4f} -> {after:.4f}, a drop of {drops[name]:.4f} > margin {margin}")
    max_drop = max(drops.values(), default=float("nan"))
    return max_drop, reasons


def measure_speed(
    paths: dict[str, Path], images: np.ndarray, seconds: float, batch: int = SPEED_BATCH, rounds: int = 8
) -> dict[str, float]:
    """Images per second of each file, one thread each, measured side by side: short rounds in
    turn, and the median round, so a neighbour's burst of load on a shared machine neither
    falls on one file only nor sets the figure."""
    if seconds <= 0 or len(images) == 0:
        return {}
    reps = -(-batch // len(images))
    batch_images = np.ascontiguousarray(np.concatenate([images] * reps)[:batch])
    sessions = {name: _Session(path) for name, path in paths.items()}
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # first calls allocate; not part of the figure
        session.predict(batch_images)
    for _ in range(rounds):
        for name, session in sessions.items():
            calls = 0
            started = time.perf_counter()
            stop = started + seconds / (rounds * len(sessions))
            while True:
                session.predict(batch_images)
                calls += 1
                if time.perf_counter() >= stop:
                    break
            rates[name].append(calls * batch / (time.perf_counter() - started))
    return {name: round(float(np.median(r)), 1) for name, r in rates.items()}


def cpu_flags() -> list[str]:
    """The CPU features int8 speed (and the exact int8 arithmetic ONNX Runtime picks) depend on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(re.findall(r"^flags\s*:\s*(.*)$", text, re.M)[0].split()) if "flags" in text else set()
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]


# ---------------------------------------------------------------------------------------------
# The whole step


def quantize_version(
    version: str | os.PathLike[str],
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    auc_margin: float = DEFAULT_AUC_MARGIN,
    fmt: str = DEFAULT_FORMAT,
    demo_data: str | os.PathLike[str] | None = None,
    dataset: str | os.PathLike[str] | None = None,
    speed_seconds: float = DEFAULT_SPEED_SECONDS,
    reduce_range: bool = False,
    log: Log = print,
) -> Int8Entry:
    """Adds model.int8.onnx and `engines.onnx_int8` to a published version; returns that entry.

    Raises ValueError when the version has no float32 ONNX file to start from or no images to
    evaluate on; nothing is changed then."""
    version = Path(version)
    if not auc_margin >= 0:
        raise ValueError(f"auc_margin must be >= 0, not {auc_margin}")
    if calibration_images < 1:
        raise ValueError(f"calibration_images must be >= 1, not {calibration_images}")
    metadata = load_metadata(version)
    fp32_entry = metadata.engines.onnx
    if fp32_entry is None or not fp32_entry.file or not (version / fp32_entry.file).is_file():
        raise ValueError(f"{version}: no float32 ONNX model to quantize (metadata engines: {metadata.engines})")
    fp32 = version / fp32_entry.file
    images = find_images(
        version,
        metadata,
        calibration_images,
        Path(demo_data) if demo_data else None,
        Path(dataset) if dataset else None,
        log,
    )

    started = time.monotonic()
    target = version / INT8_FILE
    with tempfile.TemporaryDirectory(prefix="quantize-out-") as scratch:
        built = Path(scratch) / INT8_FILE
        settings = quantize_onnx(fp32, built, images.calibration, fmt, reduce_range=reduce_range)
        quantize_s = time.monotonic() - started
        log(f"quantized ({fmt}, {len(images.calibration)} calibration images) in {quantize_s:.1f}s")

        scores_fp32 = score(fp32, images.eval_images)
        scores_int8 = score(built, images.eval_images)
        class_names = list(metadata.class_names)
        auc_fp32 = per_class_auc(scores_fp32, images.eval_labels, class_names)
        auc_int8 = per_class_auc(scores_int8, images.eval_labels, class_names)
        max_drop, reasons = judge(auc_fp32, auc_int8, auc_margin)
        load_before = os.getloadavg()[0]
        speed = measure_speed({"fp32": fp32, "int8": built}, images.eval_images, speed_seconds)

        from training.evaluate import decide

        decisions_fp32 = decide(scores_fp32, class_names, metadata.thresholds)
        decisions_int8 = decide(scores_int8, class_names, metadata.thresholds)
        entry = Int8Entry(
            file=INT8_FILE,
            sha256=file_sha256(built),
            source_sha256=file_sha256(fp32),
            accepted=not reasons,
            reasons=reasons,
            auc_margin=auc_margin,
            auc=auc_int8,
            auc_fp32=auc_fp32,
            max_auc_drop=max_drop,
            max_abs_diff=float(np.max(np.abs(scores_fp32 - scores_int8))) if len(scores_fp32) else None,
            top_class_agreement=float((scores_fp32.argmax(1) == scores_int8.argmax(1)).mean()),
            decision_agreement=float((decisions_fp32 == decisions_int8).mean()),
            eval_images=len(images.eval_labels),
            eval_source=images.source,
            calibration_images=len(images.calibration),
            images_per_s_1thread=speed,
            speed_batch=SPEED_BATCH,
            # Other work on the machine slows both files alike but the figures with them.
            load_average_1min=round(load_before, 2),
            cpu_flags=cpu_flags(),
            onnxruntime=_ort_version(),
            created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **settings,
        )
        # The file goes in first: metadata that names an accepted int8 file is only ever
        # written after that file is complete. Re-running over an older int8 file leaves a
        # moment where the old metadata describes the new file; the sha256 the engine checks
        # refuses it then rather than serving an unevaluated file.
        replace_file(target, built.read_bytes())

    def add_entry(data: dict[str, Any]) -> None:
        data.setdefault("engines", {})[ENGINE_KEY] = entry.to_dict()

    update_metadata(version, add_entry)
    aucs = ", ".join(f"{c} {auc_fp32[c]:.4f} -> {auc_int8[c]:.4f}" for c in class_names)
    speeds = ", ".join(f"{k} {v:.0f}" for k, v in speed.items())
    log(
        f"AUC float32 -> int8: {aucs}; largest drop {max_drop:.4f} (margin {auc_margin}); "
        f"max |score difference| {entry.max_abs_diff or 0.0:.4f}; decisions agree on "
        f"{100 * (entry.decision_agreement or 0.0):.1f}% of {entry.eval_images} images"
    )
    if speed:
        log(f"images/s, one thread, batch {SPEED_BATCH}: {speeds}")
    log(
        ("ACCEPTED: " if entry.accepted else "REFUSED (recorded; the onnx_int8 engine will not open it): ")
        + ("; ".join(reasons) or f"no class's AUC dropped by more than {auc_margin}")
        + f"; {target}"
    )
    return entry


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m training quantize`."""
    parser.add_argument("version", nargs="?", type=Path, help="version directory (default: the newest)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument("--name", default="moderation", help="model name inside the repository")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    parser.add_argument(
        "--auc-margin",
        type=float,
        default=DEFAULT_AUC_MARGIN,
        help="largest per-class AUC drop accepted (default %(default)s)",
    )
    parser.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT, help="ONNX quantization format")
    parser.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights: for CPUs without VNNI, where 8-bit products can saturate",
    )
    parser.add_argument("--demo-data", type=Path, help="where the demo images are (or are generated)")
    parser.add_argument(
        "--dataset", type=Path, help="the version's dataset directory (default: the one its metadata records)"
    )
    parser.add_argument(
        "--speed-seconds",
        type=float,
        default=DEFAULT_SPEED_SECONDS,
        help="time for the side-by-side speed measurement (0: skip)",
    )
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if the version already has an int8 evaluation (accepted or not)",
    )


def run(args: argparse.Namespace, log: Log = print) -> int:
    """`python -m training quantize`: 0 accepted (or nothing to do), 3 refused, 2 bad input."""
    version = args.version or latest_version_dir(args.models, args.name)
    if version is None:
        print(f"no version of {args.name} under {args.models}", file=sys.stderr)
        return 2
    if args.if_missing:
        existing = load_metadata(version).engines.onnx_int8
        if existing is not None and existing.file and (version / existing.file).is_file():
            log(f"{version}: int8 model already evaluated (accepted: {existing.accepted})")
            return 0
    try:
        entry = quantize_version(
            version,
            args.calibration_images,
            args.auc_margin,
            args.format,
            args.demo_data,
            args.dataset,
            args.speed_seconds,
            args.reduce_range,
            log=log,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if entry.accepted else EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    """The subcommand on its own (tests call it): `python -m training quantize ARGV...`."""
    parser = argparse.ArgumentParser(
        prog="python -m training quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), log=lambda m: print(m, flush=True))
