"""What a runner needs to open a model version's engine, and the opening itself: shared by
the thread runner and the worker processes (which unpickle RunnerSpec)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.preprocess import DecodeConfig
from model.repository import load_metadata
from server.config import ModelConfig
from server.serving.engines import Engine, open_engine


@dataclass(frozen=True)
class RunnerSpec:
    """What a runner needs to build its engines; plain data so it crosses into worker processes."""

    version_dir: str
    model: ModelConfig
    decode: DecodeConfig
    warmup_batch: int


def load_engine(spec: RunnerSpec, threads: int) -> tuple[Engine, tuple[int, int]]:
    """Opens the version's engine and warms it at batch 1 and the warm-up batch, checking the
    shape of what it answers."""
    metadata = load_metadata(spec.version_dir)
    engine = open_engine(metadata, Path(spec.version_dir), spec.model, threads)
    size = (metadata.input_size, metadata.input_size)
    for n in sorted({1, spec.warmup_batch}):
        scores = engine.predict(np.zeros((n, *size, 3), dtype=np.uint8))
        if scores.shape != (n, len(metadata.class_names)):
            raise ValueError(
                f"{spec.version_dir}: engine returned shape {scores.shape} for {n} images, "
                f"expected ({n}, {len(metadata.class_names)})"
            )
    return engine, size
