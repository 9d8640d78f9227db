"""TensorFlow Serving's PredictionService/Predict, served for the loaded model, so existing
TF Serving clients work against this server unchanged."""

from __future__ import annotations

import grpc

from moderation_api.tfserving import predict_pb2, predict_pb2_grpc
from server.api.tensors import from_numpy, to_numpy
from server.errors import InvalidRequest
from server.pipeline.core import ModerationCore

INPUT, OUTPUT = "images", "scores"


class PredictionServicer(predict_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ModerationCore):
        self._core = core

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        if set(request.inputs) != {INPUT}:
            raise InvalidRequest(f"inputs must be exactly {{{INPUT!r}}}, got {sorted(request.inputs)}")
        if request.output_filter and set(request.output_filter) != {OUTPUT}:
            raise InvalidRequest(f"unknown output in output_filter {list(request.output_filter)}; only {OUTPUT!r}")
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        if spec.version_label:
            raise InvalidRequest("version labels are not supported; name a version number or none")
        limit = self._core.config.limits.max_predict_images * 4096 * 4096 * 3
        images = to_numpy(request.inputs[INPUT], max_elements=limit)
        scores, model = await self._core.predict_tensors(spec.name, version, spec.signature_name, images)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.metadata.name
        response.model_spec.version.value = model.metadata.version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        response.outputs[OUTPUT].CopyFrom(from_numpy(scores.astype("float32")))
        return response
