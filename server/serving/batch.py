"""One batch of images -> per-image results: hash, decode (bytes) and the model call.

This is the unit of work of a runner slot, whether it runs in a thread of the server process
or in a worker process; it is a plain function of plain data so it pickles across processes."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.preprocess import DecodeConfig, decode_for_reading, decode_image
from server.errors import ImageError, ImageErrorCode
from server.serving.engines import Engine

if TYPE_CHECKING:
    from model.reader.reader import TextReader
    from model.reader.types import ReadingResult


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
    # What the text reader made of the image (None: no reader in this server). When the
    # version has a fusion, scores' personal_info is already the fused one.
    reading: ReadingResult | None = None
    reading_s: float = 0.0

    @classmethod
    def failed(cls, error: ImageError) -> ItemResult:
        return cls(error=error)


def inference_failed(exc: BaseException) -> ImageError:
    """What an image gets when the model call of its batch raised."""
    return ImageError(ImageErrorCode.INFERENCE_FAILED, f"model call failed: {type(exc).__name__}: {exc}")


# An item is encoded image bytes, or an already decoded uint8 tensor at the model's input size
# (the TensorFlow Serving Predict API sends those).
Item = bytes | np.ndarray


def process_batch(
    engine: Engine,
    items: list[Item],
    size: tuple[int, int],
    decode: DecodeConfig,
    reader: TextReader | None = None,
) -> list[ItemResult]:
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
        if reader is not None:
            _read(reader, items, tensors, index, results, decode)
    return results


def _read(
    reader: TextReader,
    items: list[Item],
    tensors: list[np.ndarray],
    index: list[int],
    results: list[ItemResult],
    decode: DecodeConfig,
) -> None:
    started = time.perf_counter()
    column = reader.class_index
    cnn = [float(results[i].scores[column]) for i in index]  # type: ignore[index]

    def load(k: int) -> np.ndarray:
        item = items[index[k]]
        # A tensor item (TF Serving Predict) is all there is: read it at the model's size.
        return item if isinstance(item, np.ndarray) else decode_for_reading(item, reader.config.read_side, decode)

    readings = reader.assess(tensors, cnn, load)
    elapsed = (time.perf_counter() - started) / max(1, len(index))
    for k, i in enumerate(index):
        reading = readings[k]
        results[i].reading = reading
        results[i].reading_s = elapsed
        if reading.fused:
            scores = results[i].scores
            assert scores is not None
            scores[column] = reading.fused_personal_info
