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
    """One image's result: scores, or the error that stopped it (never both). It crosses from
    worker processes pickled, ImageError included."""

    content_sha256: str = ""
    scores: np.ndarray | None = None
    error: ImageError | None = None
    decode_s: float = 0.0
    inference_s: float = 0.0
    batch_size: int = 0

    @classmethod
    def failed(cls, error: ImageError) -> ItemResult:
        return cls(error=error)


def inference_failed(exc: BaseException) -> ImageError:
    """What an image gets when the model call of its batch raised."""
    return ImageError(ImageErrorCode.INFERENCE_FAILED, f"model call failed: {type(exc).__name__}: {exc}")


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
            results[i].error = exc
        results[i].decode_s = time.perf_counter() - started
    if tensors:
        started = time.perf_counter()
        try:
            scores = engine.predict(np.stack(tensors))
            if scores.shape[0] != len(tensors):
                raise ValueError(f"engine returned {scores.shape[0]} rows for {len(tensors)} images")
        except Exception as exc:  # a failing batch fails its own images, never the server
            for i in index:
                results[i].error = inference_failed(exc)
            return results
        elapsed = time.perf_counter() - started
        for row, i in zip(scores, index, strict=True):
            results[i].scores = np.asarray(row, dtype=np.float32)
            results[i].inference_s = elapsed
            results[i].batch_size = len(tensors)
    return results
