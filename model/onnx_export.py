"""Keras moderation network -> ONNX, built node by node from the layers' weights.

tf2onnx is not a dependency, and the network (model/network.py) is small and fixed, so the
graph is written directly with onnx.helper. The resize is left out: the ONNX input is fixed at
[N, input_size, input_size, 3] uint8, which is what the server sends, and onnxruntime rejects
any other shape instead of silently scoring a different preprocessing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.network import CONV_FILTERS, conv_layer_name
from model.repository import INPUT_NAME, OUTPUT_NAME

OPSET = 17


def keras_to_onnx(keras_model: Any) -> onnx.ModelProto:
    """Builds the ONNX equivalent of a model made by model.network.build_model."""
    input_size = int(keras_model.get_layer("resize").height)
    head = keras_model.get_layer("scores").activation.__name__
    if head not in ("softmax", "sigmoid"):
        raise ValueError(f"unsupported head activation {head!r}")

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    nodes.append(helper.make_node("Cast", [INPUT_NAME], ["as_float"], to=TensorProto.FLOAT))
    # Multiplying by the float32 constant, as Keras' Rescaling does, rather than dividing by 255,
    # keeps the first layer bit-identical.
    nodes.append(helper.make_node("Mul", ["as_float", const("inv_255", np.array(1.0 / 255.0))], ["rescaled"]))
    nodes.append(helper.make_node("Transpose", ["rescaled"], ["nchw"], perm=[0, 3, 1, 2]))

    x = "nchw"
    size = input_size
    for i in range(len(CONV_FILTERS)):
        layer = keras_model.get_layer(conv_layer_name(i))
        kernel, bias = (np.asarray(w) for w in layer.get_weights())
        # Keras HWIO -> ONNX OIHW.
        w_name = const(f"{layer.name}_w", kernel.transpose(3, 2, 0, 1))
        b_name = const(f"{layer.name}_b", bias)
        nodes.append(
            helper.make_node("Conv", [x, w_name, b_name], [f"{layer.name}_out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        )
        nodes.append(helper.make_node("Relu", [f"{layer.name}_out"], [f"{layer.name}_relu"]))
        nodes.append(
            helper.make_node("MaxPool", [f"{layer.name}_relu"], [f"pool{i + 1}"], kernel_shape=[2, 2], strides=[2, 2])
        )
        x = f"pool{i + 1}"
        size //= 2

    fc1 = keras_model.get_layer("fc1")
    kernel, bias = (np.asarray(w) for w in fc1.get_weights())
    if any(layer.name == "global_max" for layer in keras_model.layers):
        nodes.append(helper.make_node("GlobalMaxPool", [x], ["global_max"]))
        nodes.append(helper.make_node("Flatten", ["global_max"], ["flat"], axis=1))
    else:
        nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
        channels = CONV_FILTERS[-1]
        # Keras flattens NHWC as (h, w, c) and ONNX NCHW as (c, h, w); permuting the kernel rows
        # once here saves a Transpose on every call.
        kernel = kernel.reshape(size, size, channels, -1).transpose(2, 0, 1, 3)
        kernel = kernel.reshape(size * size * channels, -1)
    fc1_inputs = ["flat", const("fc1_w", kernel), const("fc1_b", bias)]
    nodes.append(helper.make_node("Gemm", fc1_inputs, ["fc1_out"]))
    nodes.append(helper.make_node("Relu", ["fc1_out"], ["fc1_relu"]))
    out_layer = keras_model.get_layer("scores")
    kernel, bias = (np.asarray(w) for w in out_layer.get_weights())
    out_inputs = ["fc1_relu", const("out_w", kernel), const("out_b", bias)]
    nodes.append(helper.make_node("Gemm", out_inputs, ["logits"]))
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1))
    else:
        nodes.append(helper.make_node("Sigmoid", ["logits"], [OUTPUT_NAME]))

    num_classes = kernel.shape[1]
    graph = helper.make_graph(
        nodes,
        "moderation_cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", input_size, input_size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", num_classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="model.onnx_export")
    # onnxruntime 1.31 reads IR versions up to 10; pinning keeps the file loadable by it even
    # if a newer onnx package would stamp a newer IR version.
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(keras_model: Any, path: str | os.PathLike[str]) -> None:
    onnx.save_model(keras_to_onnx(keras_model), os.fspath(path))


def run_onnx(path: str | os.PathLike[str], images: np.ndarray) -> np.ndarray:
    """Scores uint8 images [N, input_size, input_size, 3] with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(images, dtype=np.uint8)})[0]


def _scores(fn: Callable[..., Any], images: np.ndarray) -> np.ndarray:
    # A SavedModel signature only takes its inputs by keyword; a Keras model positionally.
    signature = hasattr(fn, "structured_input_signature")
    out = fn(images=images) if signature else fn(images, training=False)
    if isinstance(out, dict):
        out = out[OUTPUT_NAME]
    return np.asarray(out, dtype=np.float32)


def parity(
    keras_or_savedmodel_fn: Callable[..., Any], onnx_path: str | os.PathLike[str], images_uint8: np.ndarray
) -> float:
    """Largest absolute difference between the scores of a reference and the ONNX file.

    The reference is a Keras model or a SavedModel signature (`loaded.signatures[...]`);
    images are uint8 [N, input_size, input_size, 3]."""
    images = np.asarray(images_uint8, dtype=np.uint8)
    reference = _scores(keras_or_savedmodel_fn, images)
    candidate = run_onnx(onnx_path, images)
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, onnx {candidate.shape}")
    return float(np.max(np.abs(reference - candidate)))
