"""Held-out evaluation of a classifier's scores: accuracy, per-class precision, recall and
one-vs-rest ROC AUC, the confusion matrix, and the score histograms drift monitoring compares
live traffic against. Plain numpy, so the server's tooling can reuse it without scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BASELINE_BINS = 10


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half);
    NaN when either side is empty."""
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average the ranks of tied scores (Mann-Whitney U with the tie correction).
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def classification_report(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """`scores` [N, C] and integer `labels` [N] -> accuracy, per-class metrics, confusion."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    predicted = scores.argmax(axis=1)
    confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for c, name in enumerate(class_names):
        true_pos = int(confusion[c, c])
        support = int(confusion[c].sum())
        predicted_count = int(confusion[:, c].sum())
        per_class[name] = {
            "support": support,
            "precision": true_pos / predicted_count if predicted_count else 0.0,
            "recall": true_pos / support if support else 0.0,
            "auc": roc_auc(scores[labels == c, c], scores[labels != c, c]),
        }
    return {
        "examples": len(labels),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "per_class": per_class,
        # rows: true class, columns: predicted class, both in class_names order
        "confusion": confusion.tolist(),
    }


def score_histograms(scores: np.ndarray, class_names: Sequence[str], bins: int = BASELINE_BINS) -> dict[str, Any]:
    """Share of images per equal-width score bin on [0, 1], per class."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    histograms = {}
    for c, name in enumerate(class_names):
        counts, _ = np.histogram(np.clip(scores[:, c], 0.0, 1.0), bins=edges)
        histograms[name] = (counts / max(1, len(scores))).tolist()
    return {"bin_edges": edges.tolist(), "histograms": histograms, "examples": len(scores)}
