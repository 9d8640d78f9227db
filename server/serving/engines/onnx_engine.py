"""ONNX Runtime engine: the default, ~5x less memory than TensorFlow and faster on CPU."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort


class OnnxEngine:
    name = "onnx"

    def __init__(self, path: str, threads: int = 0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: images})[0]

    def close(self) -> None:
        self._session = None


class OnnxInt8Engine(OnnxEngine):
    """The statically quantised model.int8.onnx (training/quantize.py): the same session, another
    name, so metrics and logs tell which arithmetic produced the scores."""

    name = "onnx_int8"
