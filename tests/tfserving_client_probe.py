"""Run as a separate process by tests/test_tfserving.py: calls Predict with the REAL
`tensorflow_serving.apis` client (which imports TensorFlow's own protos; they cannot share a
process with the server's wire-compatible subset) and prints the scores as JSON."""

from __future__ import annotations

import json
import sys

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def main(target: str, images_path: str, model: str) -> None:
    images = np.load(images_path)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in images.shape])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(
        tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_shape=shape, tensor_content=images.tobytes())
    )
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    scores = response.outputs["scores"]
    values = np.frombuffer(scores.tensor_content, dtype=np.float32) if scores.tensor_content else scores.float_val
    print(
        json.dumps(
            {
                "shape": [d.size for d in scores.tensor_shape.dim],
                "scores": [float(v) for v in values],
                "version": response.model_spec.version.value,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
