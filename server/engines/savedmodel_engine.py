"""TensorFlow SavedModel engine: the reference. Imports TensorFlow only when chosen."""

from __future__ import annotations

import numpy as np


class SavedModelEngine:
    name = "savedmodel"

    def __init__(self, path: str, threads: int = 0):
        import tensorflow as tf

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TF was already initialised by an earlier load in this process
        self._tf = tf
        self._loaded = tf.saved_model.load(path)
        self._fn = self._loaded.signatures["serving_default"]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._fn(images=self._tf.constant(images))["scores"].numpy()

    def close(self) -> None:
        self._fn = None
        self._loaded = None
