"""numpy <-> TensorFlow's TensorProto (our wire-compatible subset), without TensorFlow."""

from __future__ import annotations

import numpy as np

from moderation_api.tfserving import tensor_pb2
from server.errors import InvalidRequest

_DTYPES = {
    tensor_pb2.DT_FLOAT: (np.float32, "float_val"),
    tensor_pb2.DT_DOUBLE: (np.float64, "double_val"),
    tensor_pb2.DT_INT32: (np.int32, "int_val"),
    tensor_pb2.DT_UINT8: (np.uint8, "int_val"),
    tensor_pb2.DT_INT16: (np.int16, "int_val"),
    tensor_pb2.DT_INT8: (np.int8, "int_val"),
    tensor_pb2.DT_INT64: (np.int64, "int64_val"),
}
_FROM_NUMPY = {np.dtype(np_type): dt for dt, (np_type, _) in _DTYPES.items()}


def to_numpy(proto: tensor_pb2.TensorProto, max_elements: int) -> np.ndarray:
    if proto.dtype not in _DTYPES:
        raise InvalidRequest(
            f"tensor dtype {tensor_pb2.DataType.Name(proto.dtype)} is not supported; send DT_UINT8 or DT_FLOAT images"
        )
    np_type, field = _DTYPES[proto.dtype]
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(s < 0 for s in shape):
        raise InvalidRequest(f"tensor shape {shape} has an unknown dimension")
    count = int(np.prod(shape)) if shape else 1
    if count > max_elements:
        raise InvalidRequest(f"tensor has {count} elements, limit {max_elements}")
    if proto.tensor_content:
        data = np.frombuffer(proto.tensor_content, dtype=np_type)
    else:
        data = np.asarray(getattr(proto, field), dtype=np_type)
        if data.size == 1 and count > 1:  # TF's convention: one value fills the whole tensor
            data = np.full(count, data[0], dtype=np_type)
    if data.size != count:
        raise InvalidRequest(f"tensor shape {shape} needs {count} values, got {data.size}")
    return data.reshape(shape)


def from_numpy(array: np.ndarray) -> tensor_pb2.TensorProto:
    array = np.ascontiguousarray(array)
    proto = tensor_pb2.TensorProto(dtype=_FROM_NUMPY[array.dtype], tensor_content=array.tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto
