"""The served personal_info score: a logistic regression over model.reader.features, fitted
by training (training/fusion.py) on held-out images and applied here with numpy alone.

A logistic model because the inputs are few, mostly monotone evidence (a valid phone number
with a cue word is stronger than one without) and the operators' labels are few: it fits in
well under a second, its output is a calibrated probability the thresholds can be chosen on,
and its weights can be read in the version's metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.reader.features import FEATURE_NAMES


@dataclass(frozen=True)
class Fusion:
    feature_names: tuple[str, ...]
    # Standardisation folded in: z = (x - mean) / scale, p = sigmoid(z . weights + bias).
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        n = len(self.feature_names)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ValueError(f"fusion: {n} feature names but {len(self.weights)} weights")
        if tuple(self.feature_names) != FEATURE_NAMES:
            raise ValueError(
                "fusion was fitted on other features than this server computes: "
                f"{list(self.feature_names)} vs {list(FEATURE_NAMES)}"
            )

    def probability(self, x: np.ndarray) -> np.ndarray:
        """x: [n, features] -> [n] probabilities of personal_info."""
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fusion:
        def floats(key: str) -> tuple[float, ...]:
            values: Sequence[Any] = data[key]
            return tuple(float(v) for v in values)

        return cls(
            feature_names=tuple(str(n) for n in data["feature_names"]),
            mean=floats("mean"),
            scale=floats("scale"),
            weights=floats("weights"),
            bias=float(data["bias"]),
        )
