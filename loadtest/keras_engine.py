"""The naive baseline: Keras `model.predict` per call, as a first version behind a web handler
would do it. Kept so `make bench` can measure what batching, ONNX Runtime and worker
processes buy, in the same server on the same load; never the default."""

from __future__ import annotations

import numpy as np


class KerasEngine:
    name = "keras"

    def __init__(self, path: str, threads: int = 0):
        from server.serving.engines.savedmodel_engine import import_tensorflow

        import_tensorflow(threads)
        import keras

        layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
        inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="images")
        self._model = keras.Model(inputs, layer(inputs))

    def predict(self, images: np.ndarray) -> np.ndarray:
        out = self._model.predict(images, verbose=0)
        return np.asarray(out["scores"] if isinstance(out, dict) else out, dtype=np.float32)

    def close(self) -> None:
        self._model = None


def open_keras_engine(metadata, path, config, threads: int) -> KerasEngine:
    """The engine plug-in `make bench` names: --model-engine loadtest.keras_engine:open_keras_engine."""
    return KerasEngine(str(path), threads=threads)
