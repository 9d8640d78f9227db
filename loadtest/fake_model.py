"""A fake model backend for server tests: a real ONNX file whose scores are a softmax of the
image's mean colour (ham = green, sexual = red, personal_info = blue), so a test can make an
image with a known score by painting it. It runs through the real ONNX engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.repository import METADATA_FILE, ONNX_FILE, ModelMetadata, publish_version

CLASS_NAMES = ["ham", "sexual", "personal_info"]
SHARPNESS = 20.0  # logit per unit of mean channel intensity in [0, 1]


def build_onnx(path: str, input_size: int) -> None:
    # [R, G, B] -> logits [G, R, B] * SHARPNESS / 255
    weights = np.zeros((3, 3), dtype=np.float32)
    weights[1, 0] = weights[0, 1] = weights[2, 2] = SHARPNESS / 255.0
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f", "axes"], ["mean"], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
        ],
        "fake_colour_model",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [None, input_size, input_size, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])],
        initializer=[
            numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
            numpy_helper.from_array(weights, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def expected_scores(rgb: tuple[int, int, int]) -> dict[str, float]:
    """The scores the fake model gives a flat image of this colour."""
    r, g, b = (c / 255.0 for c in rgb)
    logits = np.array([g, r, b]) * SHARPNESS
    e = np.exp(logits - logits.max())
    p = e / e.sum()
    return dict(zip(CLASS_NAMES, p.tolist(), strict=True))


THRESHOLDS = {"sexual": {"review": 0.5, "block": 0.9}, "personal_info": {"review": 0.5, "block": 0.9}}


def publish_fake_version(repo_root, name: str = "moderation", input_size: int = 32, thresholds=None) -> Path:
    """Publishes the fake colour model as the next version of `name`, through the same
    contract (model/repository.py) as real exports."""

    def build(tmp_dir: Path, version: int) -> None:
        build_onnx(str(tmp_dir / ONNX_FILE), input_size)
        metadata = ModelMetadata(
            name=name,
            version=version,
            class_names=tuple(CLASS_NAMES),
            input_size=input_size,
            head="softmax",
            benign_class="ham",
            thresholds=thresholds or THRESHOLDS,
            created_at="2026-01-01T00:00:00Z",
            training={"source": "loadtest/fake_model.py"},
            engines={"onnx": {"file": ONNX_FILE, "max_abs_diff": 0.0}},
        )
        (tmp_dir / METADATA_FILE).write_text(metadata.to_json())

    return publish_version(repo_root, name, build)
