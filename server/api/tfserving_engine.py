"""Remote engine: sends each batch to a TensorFlow Serving PredictionService over gRPC, for
users who already run a TF Serving fleet. Also works against this server's own Predict API."""

from __future__ import annotations

import grpc
import numpy as np

from moderation_api.tfserving import predict_pb2, predict_pb2_grpc
from server.api.tensors import from_numpy, to_numpy


class TFServingEngine:
    name = "tfserving"

    def __init__(self, target: str, model_name: str, input_size: int, timeout_s: float = 10.0):
        if not target:
            raise ValueError("engine tfserving needs --model-tfserving-target host:port")
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        )
        self._stub = predict_pb2_grpc.PredictionServiceStub(self._channel)
        self._model = model_name
        self._timeout = timeout_s

    def predict(self, images: np.ndarray) -> np.ndarray:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self._model
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(from_numpy(images))
        response = self._stub.Predict(request, timeout=self._timeout)
        return to_numpy(response.outputs["scores"], max_elements=images.shape[0] * 4096).astype(np.float32)

    def close(self) -> None:
        self._channel.close()


def open_tfserving_engine(metadata, path, config, threads: int) -> TFServingEngine:
    """The `tfserving` engine (server.serving.engines.PLUGINS)."""
    return TFServingEngine(
        config.tfserving_target, config.tfserving_model or metadata.name, input_size=metadata.input_size
    )
