"""One batch of images -> per-image results: hash, decode (bytes) and the model call.

This is the unit of work of a runner slot, whether it runs in a thread of the server process
or in a worker process; it is a plain function of plain data so it pickles across processes."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from model.preprocess import DecodeConfig, decode_image
from server.errors import ImageError, ImageErrorCode
from server.serving.engines import Engine


@dataclass
class ItemResult:
    content_sha256: str = ""
    scores: np.ndarray | None = None
    # (code, message) rather than an ImageError: exceptions with custom __init__ do not pickle.
    error: tuple[str, str] | None = None
    decode_s: float = 0.0
    inference_s: float = 0.0
    batch_size: int = 0

    def raise_error(self) -> None:
        if self.error is not None:
            raise ImageError(ImageErrorCode(self.error[0]), self.error[1])


# An item is encoded image bytes, or an already decoded uint8 tensor at the model's input size
# (the TensorFlow Serving Predict API sends those).
Item = bytes | np.ndarray


def process_batch(engine: Engine, items: list[Item], size: tuple[int, int], decode: DecodeConfig) -> list[ItemResult]:
    results = [ItemResult() for _ in items]
    tensors: list[np.ndarray] = []
    index: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            tensors.append(item)
            index.append(i)
            continue
        started = time.perf_counter()
        results[i].content_sha256 = hashlib.sha256(item).hexdigest()
        try:
            tensors.append(decode_image(item, size, decode))
            index.append(i)
        except ImageError as exc:
            results[i].error = (exc.code.value, exc.message)
        results[i].decode_s = time.perf_counter() - started
    if tensors:
        started = time.perf_counter()
        try:
            scores = engine.predict(np.stack(tensors))
            if scores.shape[0] != len(tensors):
                raise ValueError(f"engine returned {scores.shape[0]} rows for {len(tensors)} images")
        except Exception as exc:  # a failing batch fails its own images, never the server
            message = f"model call failed: {type(exc).__name__}: {exc}"
            for i in index:
                results[i].error = (ImageErrorCode.INFERENCE_FAILED.value, message)
            return results
        elapsed = time.perf_counter() - started
        for row, i in zip(scores, index, strict=True):
            results[i].scores = np.asarray(row, dtype=np.float32)
            results[i].inference_s = elapsed
            results[i].batch_size = len(tensors)
    return results
