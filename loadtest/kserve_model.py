"""The moderation model as a KServe custom model: the KServe side of `make bench-frameworks`
(loadtest/frameworks.py). It runs in .venv-kserve (loadtest/requirements-kserve.txt), never in
the service's venv, and imports from this repository only modules that need numpy, Pillow and
onnxruntime.

Per request it does what a worker process of our server does per image:
server.serving.batch.process_batch on a batch of one, i.e. sha256 of the bytes, model.preprocess to the
model's input size, and the version's ONNX file in server.serving.engines.onnx_engine with one intra-op
thread per process. One image per request, no batching: KServe's Python server has none (its
batcher is a Kubernetes sidecar).

Open inference protocol (v2), over gRPC (ModelInfer) and REST (POST /v2/models/<name>/infer):
the input is one BYTES tensor of shape [1] holding the encoded image (over REST as a base64
string in JSON, see predict()); the output is FP32 "scores" of shape [1, classes], in
metadata.json's class order.

What --workers does in kserve 0.21 (kserve/model_server.py, ModelServer.start): workers > 1
starts that many uvicorn REST processes (spawned; each gets the model pickled, so each loads its
own ONNX session here), while the gRPC server always runs in the parent process on its event
loop. So REST scales to N processes and gRPC stays on one whatever --workers says. predict() is
synchronous, as in KServe's custom-model examples, and KServe calls it on the event loop.

    .venv-kserve/bin/python -m loadtest.kserve_model --model_dir models/moderation/1 \\
        --workers 2 --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InvalidInput

from model.preprocess import DecodeConfig
from model.repository import load_metadata
from server.serving.batch import process_batch
from server.serving.engines.onnx_engine import OnnxEngine

MODEL_NAME = "moderation"


class ModerationModel(kserve.Model):
    def __init__(self, name: str, version_dir: str):
        super().__init__(name)
        self.version_dir = version_dir
        self.engine: OnnxEngine | None = None
        self.load()

    def load(self) -> bool:
        metadata = load_metadata(self.version_dir)
        self.size = (metadata.input_size, metadata.input_size)
        self.classes = len(metadata.class_names)
        self.decode = DecodeConfig()
        self.engine = OnnxEngine(str(Path(self.version_dir) / metadata.engines.onnx.file), threads=1)
        # The first run of a session allocates its buffers: keep that out of the first request.
        self.engine.predict(np.zeros((1, *self.size, 3), dtype=np.uint8))
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        # KServe pickles the model into each spawned REST worker; an ONNX Runtime session does
        # not pickle, and each process needs its own anyway (as each worker of our server has).
        state = self.__dict__.copy()
        state["engine"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.ready:
            self.load()

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if len(payload.inputs) != 1 or payload.inputs[0].datatype != "BYTES":
            raise InvalidInput("expected one BYTES input tensor holding the encoded image")
        data = payload.inputs[0].as_numpy().reshape(-1)
        if data.size != 1:
            raise InvalidInput(f"one image per request, got {data.size}")
        item = data[0]
        # gRPC carries the bytes as they are; REST JSON can only carry a BYTES element as a
        # string, so REST clients send base64 (kserve 0.21 rejects non-UTF-8 BYTES in the binary
        # tensor extension: InferRequest.from_bytes re-encodes them as JSON strings).
        content = base64.b64decode(item) if isinstance(item, str) else bytes(item)
        result = process_batch(self.engine, [content], self.size, self.decode)[0]
        if result.error is not None:
            raise InvalidInput(f"{result.error.code.value}: {result.error.message}")
        scores = result.scores.reshape(1, self.classes)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=[InferOutput("scores", list(scores.shape), "FP32", scores)],
        )


def main() -> None:
    # KServe's own flags (--http_port, --grpc_port, --workers, --enable_latency_logging, ...)
    # come from its parser, as in KServe's custom-model examples.
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="a model version directory (with metadata.json)")
    args, _ = parser.parse_known_args()
    model = ModerationModel(args.model_name if args.model_name != "model" else MODEL_NAME, args.model_dir)
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
