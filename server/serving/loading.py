"""What a runner needs to open a model version's engine, and the opening itself: shared by
the thread runner and the worker processes (which unpickle RunnerSpec)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.preprocess import DecodeConfig
from model.reader.config import ReaderConfig
from model.repository import ModelMetadata, load_metadata
from server.config import ModelConfig
from server.serving.engines import Engine, open_engine

# A spec that names no reader: the engine alone (tests, tools).
READER_OFF = ReaderConfig(enabled=False)


@dataclass(frozen=True)
class RunnerSpec:
    """What a runner needs to build its engines; plain data so it crosses into worker processes."""

    version_dir: str
    model: ModelConfig
    decode: DecodeConfig
    warmup_batch: int
    reader: ReaderConfig = READER_OFF


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


PERSONAL_INFO = "personal_info"


def load_reader(spec: RunnerSpec, metadata: ModelMetadata | None = None) -> Any:
    """The version's text reader (model.reader.reader.TextReader), warmed, or None when the
    reader is off or the model has no personal_info class. The reader's modules (OpenCV, the
    OCR sessions) are imported only here, so a server with the reader off never loads them."""
    metadata = metadata or load_metadata(spec.version_dir)
    if not spec.reader.enabled or PERSONAL_INFO not in metadata.class_names:
        return None
    from model.reader.fusion import Fusion
    from model.reader.reader import TextReader

    fusion_data = metadata.reader.get("fusion")
    fusion = Fusion.from_dict(fusion_data) if fusion_data else None
    reader = TextReader(spec.reader, fusion, metadata.class_names.index(PERSONAL_INFO))
    reader.warm_up()
    return reader
