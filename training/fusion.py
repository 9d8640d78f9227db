"""Fits the personal_info fusion (model/reader/fusion.py) and applies it to a split's scores.

Fitted on held-out images (the validation split; the train split only when there is none, as
in the smoke configs), because on the images it was trained on the CNN is more sure of itself
than it will be on traffic, and a fusion fitted there would lean on it too much. The fused
score replaces the personal_info column; thresholds, the report and the promotion gate then
treat it as any score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from model.reader.config import ReaderConfig
from model.reader.features import FEATURE_NAMES, fusion_vector
from model.reader.fusion import Fusion
from training.config import Config

PERSONAL_INFO = "personal_info"


def reader_config(cfg: Config) -> ReaderConfig:
    return replace(ReaderConfig(), entity_types=tuple(cfg.fusion.entity_types))


def applies(cfg: Config) -> bool:
    return cfg.fusion.enabled and PERSONAL_INFO in cfg.data.class_names


def design(cnn_scores: np.ndarray, vectors: np.ndarray, column: int) -> np.ndarray:
    return np.stack([fusion_vector(float(p), v) for p, v in zip(cnn_scores[:, column], vectors, strict=True)])


def fit(x: np.ndarray, positive: np.ndarray, c: float) -> Fusion:
    """Standardised L2 logistic regression; the scaler is folded into the stored record."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if positive.all() or not positive.any():
        raise ValueError("the fusion needs personal_info and other images to fit on")
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=c, max_iter=1000).fit((x - scaler.mean_) / scale, positive.astype(int))
    return Fusion(
        feature_names=FEATURE_NAMES,
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in model.coef_[0]),
        bias=float(model.intercept_[0]),
    )


def fused_scores(scores: np.ndarray, vectors: np.ndarray, fusion: Fusion, column: int) -> np.ndarray:
    out = np.array(scores, dtype=np.float32, copy=True)
    out[:, column] = fusion.probability(design(scores, vectors, column))
    return out


@dataclass
class Fitted:
    fusion: Fusion
    split: str
    images: int
    positives: int

    def metadata(self, config: ReaderConfig) -> dict[str, Any]:
        from model.reader.reader import settings

        return {
            **settings(config),
            "fusion": self.fusion.to_dict(),
            "fitted_on": {"split": self.split, "images": self.images, "personal_info": self.positives},
        }


def fit_on_split(
    split: str,
    keys: list[str],
    scores: np.ndarray,
    labels: np.ndarray,
    vectors_for: Callable[[list[str], np.ndarray], np.ndarray],
    cfg: Config,
) -> Fitted:
    column = list(cfg.data.class_names).index(PERSONAL_INFO)
    vectors = vectors_for(keys, scores[:, column])
    positive = labels == column
    fusion = fit(design(scores, vectors, column), positive, cfg.fusion.c)
    return Fitted(fusion, split, len(keys), int(positive.sum()))
