"""Model engines behind one interface: uint8 [N, H, W, 3] in, float32 [N, classes] out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from model.repository import ModelMetadata
    from server.config import ModelConfig

ENGINES = ("auto", "onnx", "savedmodel", "keras", "tfserving")


class Engine(Protocol):
    name: str

    def predict(self, images: np.ndarray) -> np.ndarray:
        """images: uint8 [N, H, W, 3] at the model's input size -> float32 [N, num_classes]."""
        ...

    def close(self) -> None: ...


def onnx_passed_parity(metadata: ModelMetadata, path: Path, tolerance: float) -> bool:
    onnx = (metadata.engines or {}).get("onnx") or {}
    return bool(onnx.get("file")) and (path / onnx["file"]).exists() and onnx.get("max_abs_diff", 1.0) <= tolerance


def open_engine(metadata: ModelMetadata, path: Path, config: ModelConfig, threads: int) -> Engine:
    """The configured engine for one model version. `auto` is the fastest that passed the
    export-time parity check: ONNX Runtime, else the TensorFlow SavedModel."""
    onnx_ok = onnx_passed_parity(metadata, path, config.parity_tolerance)
    engine = config.engine
    if engine == "auto":
        engine = "onnx" if onnx_ok else "savedmodel"
    if engine == "onnx":
        if not onnx_ok:
            raise ValueError(f"{path}: no ONNX model that passed its parity check (tolerance "
                             f"{config.parity_tolerance}; metadata says {(metadata.engines or {}).get('onnx')!r})")
        from server.engines.onnx_engine import OnnxEngine

        return OnnxEngine(str(path / metadata.engines["onnx"]["file"]), threads=threads)
    if engine == "savedmodel":
        from server.engines.savedmodel_engine import SavedModelEngine

        return SavedModelEngine(str(path), threads=threads)
    if engine == "keras":
        from server.engines.keras_engine import KerasEngine

        return KerasEngine(str(path), threads=threads)
    if engine == "tfserving":
        from server.engines.tfserving_engine import TFServingEngine

        return TFServingEngine(config.tfserving_target, config.tfserving_model or metadata.name,
                               input_size=metadata.input_size)
    raise ValueError(f"unknown engine {config.engine!r}; use one of {', '.join(ENGINES)}")
