"""Per-class decision thresholds chosen on held-out data for a target false-positive rate.

For every class except the benign one, `review` is the lowest threshold at which at most
REVIEW_FPR of the held-out images NOT of that class score >= it, and `block` the same at
BLOCK_FPR. Both are clamped into a sane range: a near-perfect demo model would otherwise get
thresholds of 1e-6, which would flag any image whose score merely twitches, and a poor model
thresholds of 1.0, which could never fire."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

REVIEW_FPR = 0.05
BLOCK_FPR = 0.005
REVIEW_RANGE = (0.2, 0.99)
BLOCK_RANGE = (0.5, 0.999)


def threshold_for_fpr(negative_scores: np.ndarray, max_fpr: float) -> float:
    """Lowest t with mean(negative_scores >= t) <= max_fpr (0.0 when there are no negatives)."""
    neg = np.sort(np.asarray(negative_scores, dtype=np.float32))[::-1]
    allowed = int(np.floor(max_fpr * len(neg)))
    if allowed >= len(neg):
        return 0.0
    # Just above the highest negative that must not be flagged; every score above it is one of
    # the `allowed` largest.
    return float(np.nextafter(neg[allowed], np.float32(np.inf)))


def _rates(scores: np.ndarray, is_class: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = scores >= threshold
    return {
        "false_positive_rate": float(flagged[~is_class].mean()) if (~is_class).any() else float("nan"),
        "recall": float(flagged[is_class].mean()) if is_class.any() else float("nan"),
    }


def choose_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    benign_class: str,
    review_fpr: float | Mapping[str, float] = REVIEW_FPR,
    block_fpr: float = BLOCK_FPR,
    review_range: tuple[float, float] = REVIEW_RANGE,
    block_range: tuple[float, float] = BLOCK_RANGE,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Returns (thresholds for ModelMetadata, a report of the held-out rates they achieve).

    `review_fpr` may differ per class (a mapping; classes it does not name get REVIEW_FPR)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    thresholds: dict[str, dict[str, float]] = {}
    report: dict[str, Any] = {
        "review_target_fpr": review_fpr if isinstance(review_fpr, float | int) else dict(review_fpr),
        "block_target_fpr": block_fpr,
    }
    for c, name in enumerate(class_names):
        if name == benign_class:
            continue
        target = review_fpr.get(name, REVIEW_FPR) if isinstance(review_fpr, Mapping) else review_fpr
        is_class = labels == c
        negatives = scores[~is_class, c]
        review = float(np.clip(threshold_for_fpr(negatives, target), *review_range))
        block = float(np.clip(threshold_for_fpr(negatives, block_fpr), *block_range))
        block = max(block, review)
        thresholds[name] = {"review": review, "block": block}
        report[name] = {
            "review": _rates(scores[:, c], is_class, review),
            "block": _rates(scores[:, c], is_class, block),
        }
    return thresholds, report
