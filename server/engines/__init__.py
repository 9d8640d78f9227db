"""Model engines behind one interface: uint8 [N, H, W, 3] in, float32 [N, classes] out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    name: str

    def predict(self, images: np.ndarray) -> np.ndarray:
        """images: uint8 [N, H, W, 3] at the model's input size -> float32 [N, num_classes]."""
        ...

    def close(self) -> None: ...
