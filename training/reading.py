"""The text reader run over a dataset split, for fitting and evaluating the personal_info fusion.

The shards hold 128-pixel images; the reader needs the originals, which labels.jsonl names
(files or URLs). Each image is gated exactly as the server gates it; images the gate lets
through are read at reading size. What the server does for an image the gate refuses depends
on the CNN (it reads anyway above `read_above_cnn`), so those are read only when a model's
scores ask for it, and every result is cached per image under a fingerprint of the reader's
settings: evaluating the serving version and the candidate on the same split reads each image
once.

Results are reader feature vectors (model.reader.features.READER_FEATURES), never text."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from model.reader.config import ReaderConfig
from model.reader.features import FEATURE_NAMES
from model.reader.ocr import ENGINE_NAME
from training import dataset_builder

CACHE_DIR = "reader"
_MAX_BYTES = 20 * 1024 * 1024


def fingerprint(config: ReaderConfig) -> str:
    blob = json.dumps(
        {
            "engine": ENGINE_NAME,
            "features": FEATURE_NAMES,
            "config": asdict(config),
            "recognizers": _recognizers_version(),
        },
        sort_keys=True,
        default=list,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _recognizers_version() -> str:
    # The recognizers' source is what their findings depend on: a change re-reads.
    from model.reader import recognizers

    return hashlib.sha256(Path(recognizers.__file__).read_bytes()).hexdigest()[:16]


def split_keys(dataset_dir: str | os.PathLike[str], split: str, manifest: dict | None = None) -> list[str]:
    """sha256 of each record of a split, in shard order (the order pipeline.load_arrays gives)."""
    import tensorflow as tf

    files = dataset_builder.split_files(dataset_dir, split, manifest)
    if not files:
        return []
    spec = {"sha256": tf.io.FixedLenFeature([], tf.string)}
    records = tf.data.TFRecordDataset([os.fspath(f) for f in files])
    return [
        tf.io.parse_single_example(raw, spec)["sha256"].numpy().decode()  # type: ignore[union-attr]
        for raw in records
    ]


def image_refs(dataset_dir: str | os.PathLike[str]) -> dict[str, str]:
    refs: dict[str, str] = {}
    with open(Path(dataset_dir) / dataset_builder.LABELS_FILE, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            refs.setdefault(row["sha256"], row["image"])
    return refs


# -- worker processes ---------------------------------------------------------------------------
_reader: Any = None


def _init(config: ReaderConfig) -> None:
    global _reader
    from model.reader.reader import TextReader

    _reader = TextReader(config)
    _reader.warm_up()


def _work(task: tuple[str, str, bool]) -> tuple[str, dict]:
    """(sha256, image ref, read even if the gate refuses) -> the cache entry for that image."""
    from model.preprocess import decode_for_reading, decode_image
    from model.reader.types import ReadingStatus

    sha, ref, force = task
    reader = _reader
    started = time.process_time()
    try:
        data = dataset_builder.read_image_bytes(ref, 10.0, _MAX_BYTES)
        small = decode_image(data, (128, 128))
    except Exception:  # an unreadable original reads as FAILED, as in the server
        return sha, {"gate": 0.0, "wants": False, "failed": _vector(reader, ReadingStatus.FAILED, 0.0)}
    gate = reader.gate(small)
    entry: dict[str, Any] = {"gate": float(gate.score), "wants": bool(gate.read)}
    entry["skip"] = _vector(reader, ReadingStatus.SKIPPED, gate.score)
    if entry["wants"] or force:
        full = decode_for_reading(data, reader.config.read_side)
        entry["read"] = [float(v) for v in reader.read_vector(full, gate)]
        entry["read_ms"] = 1000 * (time.process_time() - started)
    else:
        entry["gate_ms"] = 1000 * (time.process_time() - started)
    return sha, entry


def _vector(reader: Any, status: Any, gate: float) -> list[float]:
    return [float(v) for v in reader.empty_vector(status, gate)]


class ReaderCache:
    """Reader feature vectors per image of a dataset, computed on demand and kept on disk."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        config: ReaderConfig,
        log: Callable[[str], None],
        workers: int = 0,
        refs: dict[str, str] | None = None,
    ):
        """`refs` (sha256 -> file or URL) for images outside a dataset; by default the
        dataset's labels.jsonl names them."""
        self.dataset_dir = Path(dataset_dir)
        self.config = config
        self.log = log
        self.workers = workers or (os.cpu_count() or 1)
        self.path = self.dataset_dir / CACHE_DIR / f"{fingerprint(config)}.jsonl"
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    sha, entry = json.loads(line)
                    self.entries[sha] = {**self.entries.get(sha, {}), **entry}
        self._refs: dict[str, str] | None = refs

    def _compute(self, tasks: list[tuple[str, str, bool]]) -> None:
        if not tasks:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        workers = max(1, min(self.workers, len(tasks) // 8 or 1))
        with open(self.path, "a", encoding="utf-8") as out:
            if workers == 1:
                _init(self.config)
                results = map(_work, tasks)
                self._store(results, out)
            else:
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(workers, initializer=_init, initargs=(self.config,)) as pool:
                    self._store(pool.imap_unordered(_work, tasks, chunksize=4), out)

    def _store(self, results: Any, out: Any) -> None:
        for sha, entry in results:
            self.entries[sha] = {**self.entries.get(sha, {}), **entry}
            out.write(json.dumps([sha, entry]) + "\n")

    def vectors(self, keys: Sequence[str], cnn_personal_info: np.ndarray) -> np.ndarray:
        """[len(keys), len(READER_FEATURES)]: what the server's reader would give each image,
        given the model's personal_info scores (which decide whether a gated-out image is read)."""
        if self._refs is None:
            self._refs = image_refs(self.dataset_dir)
        force = cnn_personal_info >= self.config.read_above_cnn
        tasks = []
        for sha, must in zip(keys, force.tolist(), strict=True):
            entry = self.entries.get(sha)
            if entry is None or ("read" not in entry and "failed" not in entry and (entry["wants"] or must)):
                tasks.append((sha, self._refs.get(sha, ""), bool(must)))
        if tasks:
            self.log(f"reader: reading {len(tasks)} images ({self.workers} processes)")
        self._compute(tasks)
        rows = []
        for sha, must in zip(keys, force.tolist(), strict=True):
            entry = self.entries[sha]
            if "failed" in entry:
                rows.append(entry["failed"])
            elif entry["wants"] or must:
                rows.append(entry["read"])
            else:
                rows.append(entry["skip"])
        return np.asarray(rows, dtype=np.float32)

    def cost_ms(self, sha: str) -> float | None:
        """The CPU the reader spent on an image as last measured (gate only when it skipped)."""
        entry = self.entries.get(sha, {})
        return entry.get("read_ms", entry.get("gate_ms"))
