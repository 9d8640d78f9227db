"""Trained Keras model -> a published version in the model repository.

One version holds a SavedModel (signature `serving_default`: `images` uint8 -> `scores`), an
ONNX file with the same computation, and metadata.json. Both engines are checked against the
Keras model before the version is published, and the measured differences are recorded in the
metadata, so a version whose engines disagree never becomes visible to the server."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model.onnx_export import OPSET, parity, save_onnx
from model.repository import (
    INPUT_NAME,
    METADATA_FILE,
    ONNX_FILE,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    Engines,
    ModelMetadata,
    OnnxEntry,
    SavedModelEntry,
    publish_version,
)

# Both engines compute the same float32 graph; anything above this is a conversion bug, not
# rounding (typical differences are around 1e-7).
MAX_ENGINE_DIFF = 1e-4


def save_serving_model(keras_model: Any, path: str | os.PathLike[str]) -> None:
    """Writes a SavedModel whose only signature is `serving_default(images) -> {scores}`."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=lambda images: {OUTPUT_NAME: keras_model(images, training=False)},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
    )
    archive.write_out(os.fspath(path), verbose=False)


def load_serving_fn(path: str | os.PathLike[str]) -> Any:
    """The `serving_default` signature of a SavedModel; call it as fn(images=uint8 tensor)."""
    import tensorflow as tf

    return tf.saved_model.load(os.fspath(path)).signatures[SIGNATURE_NAME]


def check_images(input_size: int, real_images: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """Images the engines are compared on: random noise (every pixel value, every path
    through the ReLUs) plus whatever real images the caller has."""
    noise = np.random.default_rng(seed).integers(0, 256, (8, input_size, input_size, 3), dtype=np.uint8)
    if real_images is None or len(real_images) == 0:
        return noise
    return np.concatenate([noise, np.asarray(real_images, dtype=np.uint8)])


def export_version(
    keras_model: Any,
    metadata: ModelMetadata,
    repo_root: str | os.PathLike[str],
    name: str,
    check_with: np.ndarray | None = None,
    extra_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Publishes `keras_model` as the next version of `name` under `repo_root`; returns its dir.

    `metadata.version` and `metadata.name` are replaced by the published ones and `engines` is
    filled in. `check_with` are real uint8 images [N, input_size, input_size, 3] to compare the
    engines on besides random noise. `extra_dirs` maps subdirectory names to directories copied
    into the version (the evaluation report), so they appear with it in the same rename.
    Raises RuntimeError if an engine differs from Keras by more than MAX_ENGINE_DIFF; nothing
    is published then."""
    images = check_images(metadata.input_size, check_with)
    reference = np.asarray(keras_model.predict(images, batch_size=64, verbose=0), dtype=np.float32)

    def build(tmp_dir: Path, version: int) -> None:
        save_serving_model(keras_model, tmp_dir)
        saved_diff = float(np.max(np.abs(reference - _signature_scores(load_serving_fn(tmp_dir), images))))
        onnx_file = tmp_dir / ONNX_FILE
        save_onnx(keras_model, onnx_file)
        onnx_diff = parity(keras_model, onnx_file, images)
        for engine, diff in (("savedmodel", saved_diff), ("onnx", onnx_diff)):
            if not diff <= MAX_ENGINE_DIFF:  # also catches NaN
                raise RuntimeError(f"{engine} differs from Keras by {diff:.3g} > {MAX_ENGINE_DIFF}")
        engines = Engines(
            savedmodel=SavedModelEntry(
                signature=SIGNATURE_NAME, input=INPUT_NAME, output=OUTPUT_NAME, max_abs_diff=saved_diff
            ),
            onnx=OnnxEntry(file=ONNX_FILE, opset=OPSET, max_abs_diff=onnx_diff),
            parity_images=len(images),
        )
        for subdir, source in (extra_dirs or {}).items():
            shutil.copytree(source, tmp_dir / subdir)
        final = dataclasses.replace(metadata, name=name, version=version, engines=engines)
        (tmp_dir / METADATA_FILE).write_text(final.to_json(), encoding="utf-8")

    return publish_version(repo_root, name, build)


def _signature_scores(fn: Any, images: np.ndarray) -> np.ndarray:
    return np.asarray(fn(images=images)[OUTPUT_NAME], dtype=np.float32)
