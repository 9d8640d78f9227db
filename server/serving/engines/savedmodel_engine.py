"""TensorFlow SavedModel engine: the reference. Imports TensorFlow only when chosen."""

from __future__ import annotations

import contextlib

import numpy as np


def import_tensorflow(threads: int):
    import tensorflow as tf

    if threads:
        # Raises once TF has initialised its runtime (a second model in this process): keep
        # the first setting then.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


class SavedModelEngine:
    name = "savedmodel"

    def __init__(self, path: str, threads: int = 0):
        self._tf = import_tensorflow(threads)
        self._loaded = self._tf.saved_model.load(path)
        self._fn = self._loaded.signatures["serving_default"]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._fn(images=self._tf.constant(images))["scores"].numpy()

    def close(self) -> None:
        self._fn = None
        self._loaded = None
