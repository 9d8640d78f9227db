"""TensorFlow Serving compatibility: our server answers PredictionService/Predict for a real
`tensorflow_serving.apis` client, and the remote `tfserving` engine works against it."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from loadtest.fake_model import expected_scores
from moderation_api.tfserving import predict_pb2, predict_pb2_grpc
from moderation_api.v1 import moderation_pb2 as pb
from server.api.tensors import from_numpy
from tests.conftest import encode
from tests.harness import ServerThread, make_config


@pytest.fixture
def server(model_repo, tmp_path):
    running = ServerThread(make_config(model_repo, tmp_path / "audit.sqlite3")).start()
    yield running
    running.stop()


def flat(rgb, size=32):
    return np.full((size, size, 3), rgb, dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_real_tensorflow_serving_client_gets_the_scores(server, tmp_path):
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]
    images = np.stack([flat(c) for c in colours])
    np.save(tmp_path / "images.npy", images)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.tfserving_client_probe",
            server.target,
            str(tmp_path / "images.npy"),
            "moderation",
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["shape"] == [3, 3] and answer["version"] == 1
    scores = np.array(answer["scores"]).reshape(3, 3)
    for row, colour in zip(scores, colours, strict=True):
        np.testing.assert_allclose(row, list(expected_scores(colour).values()), atol=1e-5)


def predict(server, images, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", "moderation")
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    request.inputs["images"].CopyFrom(from_numpy(images))
    with grpc.insecure_channel(server.target) as channel:
        return predict_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


def test_predict_resizes_other_sizes_and_refuses_wrong_requests(server):
    response = predict(server, np.stack([flat((255, 0, 0), 100)]))
    scores = np.frombuffer(response.outputs["scores"].tensor_content, dtype=np.float32)
    assert scores.argmax() == 1
    for spec, code in (({"name": "other"}, grpc.StatusCode.NOT_FOUND), ({"version": 7}, grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as info:
            predict(server, np.stack([flat((0, 0, 0))]), **spec)
        assert info.value.code() == code
    with pytest.raises(grpc.RpcError) as info:
        predict(server, np.zeros((2, 32, 32), dtype=np.uint8))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "[batch, height, width, 3]" in info.value.details()


def test_remote_tfserving_engine_against_our_predict_api(server, model_repo, tmp_path):
    config = make_config(
        model_repo, tmp_path / "audit2.sqlite3", model={"engine": "tfserving", "tfserving_target": server.target}
    )
    front = ServerThread(config).start()
    try:
        with grpc.insecure_channel(front.target) as channel:
            response = front.stub(channel).Classify(
                pb.ClassifyRequest(
                    post_id="p",
                    images=[
                        pb.ImageInput(id="r", content=encode((255, 0, 0), fmt="PNG")),
                        pb.ImageInput(id="g", content=encode((0, 200, 0), fmt="PNG")),
                    ],
                ),
                timeout=10,
            )
        assert front.service.models.current.engine_name == "tfserving"
    finally:
        front.stop()
    assert [r.top_class for r in response.results] == ["sexual", "ham"]
    assert response.results[0].scores["sexual"] == pytest.approx(expected_scores((255, 0, 0))["sexual"], abs=1e-5)
