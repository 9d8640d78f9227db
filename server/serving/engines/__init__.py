"""Model engines behind one interface: uint8 [N, H, W, 3] in, float32 [N, classes] out.

`--model-engine` names a built-in engine or a plug-in as `package.module:factory`, a callable
taking (metadata, version path, ModelConfig, threads). Plug-ins are imported by name, so that
engines which need grpc (the remote TF Serving engine, an API adapter) or TensorFlow's Keras
(the naive baseline of `make bench`) live outside server.serving, which imports neither."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from model.repository import ModelMetadata
    from server.config import ModelConfig

# Built-in engines that live in other packages, imported by name only when configured.
PLUGINS = {"tfserving": "server.api.tfserving_engine:open_tfserving_engine"}
ENGINES = ("auto", "onnx", "onnx_int8", "savedmodel", *PLUGINS)


class Engine(Protocol):
    name: str

    def predict(self, images: np.ndarray) -> np.ndarray:
        """images: uint8 [N, H, W, 3] at the model's input size -> float32 [N, num_classes]."""
        ...

    def close(self) -> None: ...


def onnx_passed_parity(metadata: ModelMetadata, path: Path, tolerance: float) -> bool:
    onnx = metadata.engines.onnx
    return onnx is not None and onnx.passed_parity(tolerance) and (path / onnx.file).exists()


def int8_refusal(metadata: ModelMetadata, path: Path, config: ModelConfig) -> str | None:
    """Why the version's int8 file (training/quantize.py) must not be served; None if it may.

    It may when `python -m training quantize` accepted it, the AUC drop it measured is within this
    server's `int8_auc_margin` too (a server can ask for less than the quantizer allowed, never
    more), the file is the one that was evaluated, and the float32 ONNX file it was made from
    and compared with passed its own parity check."""
    entry = metadata.engines.onnx_int8
    if entry is None:
        return "no int8 model: run `python -m training quantize` on the version (make quantize)"
    if not entry.accepted:
        return f"the int8 model was refused by its evaluation: {'; '.join(entry.reasons or ['no reason'])}"
    drop = entry.max_auc_drop
    if not isinstance(drop, int | float) or not drop <= config.int8_auc_margin:  # also catches NaN
        return f"its largest AUC drop {drop} exceeds int8_auc_margin {config.int8_auc_margin}"
    if not onnx_passed_parity(metadata, path, config.parity_tolerance):
        return "the float32 ONNX model it was made from did not pass its parity check"
    file = path / entry.file
    if not entry.file or not file.is_file():
        return f"{file} is missing"
    from model.repository import file_sha256

    # The file can be replaced after the evaluation recorded (a re-run of the quantizer that
    # stopped before rewriting the metadata); only the evaluated bytes are served.
    if file_sha256(file) != entry.sha256:
        return f"{file} is not the file that was evaluated (sha256 differs from the metadata's)"
    return None


def open_engine(metadata: ModelMetadata, path: Path, config: ModelConfig, threads: int) -> Engine:
    """The configured engine for one model version. `auto` is the fastest that passed the
    export-time parity check: ONNX Runtime, else the TensorFlow SavedModel; the int8 model only
    with `prefer_int8` (below)."""
    onnx_ok = onnx_passed_parity(metadata, path, config.parity_tolerance)
    engine = config.engine
    if engine == "auto":
        # int8 is about twice as fast, but it is not a parity-checked copy of the trained
        # model: every score moves a little (the thresholds were chosen on float32 scores), so
        # `auto` only takes it when the operator opted in, and only where its evaluation
        # accepted it; otherwise auto falls back to float32 quietly.
        if config.prefer_int8 and int8_refusal(metadata, path, config) is None:
            engine = "onnx_int8"
        else:
            engine = "onnx" if onnx_ok else "savedmodel"
    if engine == "onnx_int8":
        reason = int8_refusal(metadata, path, config)
        if reason is not None:
            raise ValueError(f"{path}: engine onnx_int8 refused: {reason}")
        from server.serving.engines.onnx_engine import OnnxInt8Engine

        assert metadata.engines.onnx_int8 is not None  # int8_refusal said so
        return OnnxInt8Engine(str(path / metadata.engines.onnx_int8.file), threads=threads)
    if engine == "onnx":
        if not onnx_ok:
            raise ValueError(
                f"{path}: no ONNX model that passed its parity check (tolerance "
                f"{config.parity_tolerance}; metadata says {metadata.engines.onnx!r})"
            )
        from server.serving.engines.onnx_engine import OnnxEngine

        assert metadata.engines.onnx is not None  # onnx_ok said so
        return OnnxEngine(str(path / metadata.engines.onnx.file), threads=threads)
    if engine == "savedmodel":
        from server.serving.engines.savedmodel_engine import SavedModelEngine

        return SavedModelEngine(str(path), threads=threads)
    factory = PLUGINS.get(engine, engine)
    if ":" in factory:
        module, _, attribute = factory.partition(":")
        return getattr(importlib.import_module(module), attribute)(metadata, path, config, threads)
    raise ValueError(f"unknown engine {config.engine!r}; use one of {', '.join(ENGINES)} or package.module:factory")
