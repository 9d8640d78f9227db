"""Evaluation of a model's scores on the frozen evaluation split: every figure the report shows,
the thresholds the server's policy uses, the workload figure and the drift baseline.

Definitions (docs/retraining.md explains them for users):

- Per class, one against the rest: ROC curve and AUC, precision-recall curve and average
  precision (the step-wise area, as scikit-learn computes it), reliability curve and expected
  calibration error (ECE: the share-weighted mean |observed frequency - mean score| over equal-
  width score bins).
- Thresholds: per flagged class, `review` at the target false-positive rate (default 5%) and
  `block` at `block_fpr` (training/thresholds.py), with the recall each gives.
- Workload: an image is *bad* when its label is not the benign class; its *badness* is its
  highest flagged-class score. At the miss budget X (default 2%), the model passes (with no
  human look) every image whose badness is below the X-quantile of the bad images' badness.
  The figure is the share of all images passed, at the production class mix
  (`production_benign_share`); it is how much of the audit workload the model removes.
- Drift baseline: per-class score histograms, decision and top-class mix on the evaluation
  split reweighted to the production mix (model/repository.py's score_baseline format)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.config import Config
from training.metrics import roc_auc
from training.thresholds import choose_thresholds

CURVE_POINTS = 200


# ---------------------------------------------------------------------------------------------
# Curves


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """False- and true-positive rates at every distinct score taken as the threshold
    (score >= threshold is positive), from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], dtype=int)
    tp = np.cumsum(p)[last]
    fp = np.cumsum(~p)[last]
    n_pos, n_neg = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    return {
        "fpr": np.r_[0.0, fp / n_neg].tolist(),
        "tpr": np.r_[0.0, tp / n_pos].tolist(),
        "thresholds": np.r_[np.inf, s[last]].tolist(),
    }


def precision_recall(scores: np.ndarray, positive: np.ndarray) -> tuple[dict[str, list[float]], float]:
    """(precision-recall curve, average precision). AP = sum over thresholds of
    (R_n - R_{n-1}) * P_n, without interpolation; NaN without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0 or len(scores) == 0:
        return {"precision": [], "recall": [], "thresholds": []}, float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(p)[last].astype(np.float64)
    predicted = last + 1.0
    precision = tp / predicted
    recall = tp / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {
        "precision": np.r_[1.0, precision].tolist(),
        "recall": np.r_[0.0, recall].tolist(),
        "thresholds": np.r_[np.inf, s[last]].tolist(),
    }, ap


def reliability(probabilities: np.ndarray, outcomes: np.ndarray, bins: int) -> dict[str, Any]:
    """Reliability curve on equal-width bins of [0, 1] and the expected calibration error."""
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf = np.bincount(index, probabilities, minlength=bins)
    freq = np.bincount(index, outcomes, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count > 0, conf / count, np.nan)
        observed = np.where(count > 0, freq / count, np.nan)
    total = max(int(count.sum()), 1)
    ece = float(np.nansum(count / total * np.abs(observed - mean_score))) if count.sum() else float("nan")
    return {
        "bin_edges": edges.tolist(),
        "mean_score": _nan_list(mean_score),
        "observed": _nan_list(observed),
        "count": count.tolist(),
        "ece": ece,
    }


def _nan_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _thin(curve: dict[str, list[float]], points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Every key's list cut to about `points` evenly spaced entries (the ends kept), for JSON."""
    length = len(next(iter(curve.values()), []))
    if length <= points:
        return curve
    keep = np.unique(np.r_[np.linspace(0, length - 1, points).astype(int), length - 1])
    return {k: [v[i] for i in keep] for k, v in curve.items()}


# ---------------------------------------------------------------------------------------------
# Workload and the production mix


def mix_weights(labels: np.ndarray, benign: int, benign_share: float) -> np.ndarray:
    """Per-image weights that turn the evaluation split's mix into one with `benign_share`
    benign images (bad classes keep their relative shares); all ones when benign_share is 0 or
    a side is missing."""
    labels = np.asarray(labels)
    is_benign = labels == benign
    n, n_benign = len(labels), int(is_benign.sum())
    if benign_share <= 0 or n_benign in (0, n):
        return np.ones(n)
    return np.where(is_benign, benign_share * n / n_benign, (1 - benign_share) * n / (n - n_benign))


def badness(scores: np.ndarray, class_names: Sequence[str], benign_class: str) -> np.ndarray:
    flagged = [i for i, c in enumerate(class_names) if c != benign_class]
    return np.asarray(scores)[:, flagged].max(axis=1)


def workload(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    benign_class: str,
    max_miss_rate: float,
    benign_share: float,
) -> dict[str, Any]:
    """The share of images passed with no human look while at most max_miss_rate of the bad ones
    pass (module docstring), at the evaluation mix and at the production mix."""
    benign = class_names.index(benign_class)
    labels = np.asarray(labels)
    b = badness(scores, class_names, benign_class)
    is_bad = labels != benign
    bad_scores = np.sort(b[is_bad])
    allowed = int(np.floor(max_miss_rate * len(bad_scores) + 1e-9))
    threshold = float(bad_scores[allowed]) if allowed < len(bad_scores) else float("inf")
    passed = b < threshold
    miss = float(passed[is_bad].mean()) if is_bad.any() else float("nan")
    benign_pass = float(passed[~is_bad].mean()) if (~is_bad).any() else float("nan")
    share = _production_share(benign_share, labels, benign)
    return {
        "max_miss_rate": max_miss_rate,
        "badness_threshold": threshold if np.isfinite(threshold) else None,
        "miss_rate": miss,
        "benign_pass_rate": benign_pass,
        "pass_share_eval_mix": float(passed.mean()) if len(passed) else float("nan"),
        "production_benign_share": share,
        "pass_share": share * benign_pass + (1 - share) * miss,
    }


def _production_share(benign_share: float, labels: np.ndarray, benign: int) -> float:
    return benign_share if benign_share > 0 else float((np.asarray(labels) == benign).mean())


def policy_outcome(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    benign_class: str,
    thresholds: dict[str, dict[str, float]],
    benign_share: float,
) -> dict[str, Any]:
    """What the exported thresholds do, as the server's policy applies them (server/pipeline/policy.py)."""
    benign = class_names.index(benign_class)
    labels = np.asarray(labels)
    decisions = decide(scores, class_names, thresholds)
    is_bad = labels != benign
    passed = decisions == "PASS"
    share = _production_share(benign_share, labels, benign)
    weights = mix_weights(labels, benign, share)
    mix = {d: float(weights[decisions == d].sum() / max(weights.sum(), 1e-12)) for d in ("PASS", "REVIEW", "BLOCK")}
    miss = float(passed[is_bad].mean()) if is_bad.any() else float("nan")
    benign_pass = float(passed[~is_bad].mean()) if (~is_bad).any() else float("nan")
    return {
        "miss_rate": miss,
        "benign_pass_rate": benign_pass,
        "pass_share": share * benign_pass + (1 - share) * miss,
        "decision_mix": mix,
    }


def decide(scores: np.ndarray, class_names: Sequence[str], thresholds: dict[str, dict[str, float]]) -> np.ndarray:
    """PASS / REVIEW / BLOCK per image, exactly as server/pipeline/policy.py decides."""
    scores = np.asarray(scores)
    out = np.full(len(scores), "PASS", dtype=object)
    review = np.zeros(len(scores), dtype=bool)
    block = np.zeros(len(scores), dtype=bool)
    for cls, levels in thresholds.items():
        column = scores[:, list(class_names).index(cls)]
        block |= column >= levels["block"]
        review |= column >= levels["review"]
    out[review] = "REVIEW"
    out[block] = "BLOCK"
    return out


def score_baseline(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    benign_class: str,
    thresholds: dict[str, dict[str, float]],
    benign_share: float,
    bins: int,
) -> dict[str, Any]:
    """ModelMetadata.score_baseline (format in model/repository.py) at the production mix."""
    benign = list(class_names).index(benign_class)
    weights = mix_weights(labels, benign, _production_share(benign_share, labels, benign))
    total = max(float(weights.sum()), 1e-12)
    edges = np.linspace(0.0, 1.0, bins + 1)
    histograms = {}
    for c, name in enumerate(class_names):
        counts, _ = np.histogram(np.clip(scores[:, c], 0.0, 1.0), bins=edges, weights=weights)
        histograms[name] = (counts / total).tolist()
    decisions = decide(scores, class_names, thresholds)
    top = np.asarray(scores).argmax(axis=1)
    return {
        "bin_edges": edges.tolist(),
        "histograms": histograms,
        "examples": len(scores),
        "decision_mix": {d: float(weights[decisions == d].sum() / total) for d in ("PASS", "REVIEW", "BLOCK")},
        "class_mix": {name: float(weights[top == c].sum() / total) for c, name in enumerate(class_names)},
        "source": "frozen evaluation split",
        "production_benign_share": _production_share(benign_share, labels, benign),
    }


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, cfg: Config) -> dict[str, Any]:
    """Every figure of the report, as plain JSON-able data."""
    class_names = list(cfg.data.class_names)
    benign_class = cfg.data.benign_class
    e = cfg.eval
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(class_names)
    predicted = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)

    review_fpr = {c: cfg.target_fpr(c) for c in class_names if c != benign_class}
    thresholds, threshold_rates = choose_thresholds(
        scores.astype(np.float32),
        labels,
        class_names,
        benign_class,
        review_fpr=review_fpr,
        block_fpr=e.block_fpr,
        review_range=tuple(e.review_range),
        block_range=tuple(e.block_range),
    )

    per_class: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        positive = labels == c
        pr, ap = precision_recall(scores[:, c], positive)
        rel = reliability(scores[:, c], positive, e.calibration_bins)
        hist_edges = np.linspace(0.0, 1.0, 21)
        entry = {
            "support": int(positive.sum()),
            "precision": float(confusion[c, c] / confusion[:, c].sum()) if confusion[:, c].sum() else 0.0,
            "recall": float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else 0.0,
            "auc": roc_auc(scores[positive, c], scores[~positive, c]),
            "average_precision": ap,
            "ece": rel["ece"],
            "roc": _thin(roc_curve(scores[:, c], positive)),
            "pr": _thin(pr),
            "reliability": rel,
            "score_histogram": {
                "bin_edges": hist_edges.tolist(),
                "positive": np.histogram(scores[positive, c], bins=hist_edges)[0].tolist(),
                "negative": np.histogram(scores[~positive, c], bins=hist_edges)[0].tolist(),
            },
        }
        if name in thresholds:
            rates = threshold_rates[name]
            entry["thresholds"] = {
                "target_fpr": review_fpr[name],
                "review": thresholds[name]["review"],
                "review_recall": rates["review"]["recall"],
                "review_fpr": rates["review"]["false_positive_rate"],
                "block": thresholds[name]["block"],
                "block_recall": rates["block"]["recall"],
                "block_fpr": rates["block"]["false_positive_rate"],
            }
        per_class[name] = entry

    top_conf = scores.max(axis=1) if len(scores) else np.zeros(0)
    top_label = reliability(top_conf, predicted == labels, e.calibration_bins)
    return {
        "examples": len(labels),
        "class_counts": {name: int((labels == c).sum()) for c, name in enumerate(class_names)},
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "confusion": confusion.tolist(),
        "top_label_ece": top_label["ece"],
        "top_label_reliability": top_label,
        "per_class": per_class,
        "thresholds": thresholds,
        "threshold_policy": {
            "review_target_fpr": review_fpr,
            "block_fpr": e.block_fpr,
            "review_range": list(e.review_range),
            "block_range": list(e.block_range),
        },
        "workload": workload(scores, labels, class_names, benign_class, e.max_miss_rate, e.production_benign_share),
        "policy": policy_outcome(scores, labels, class_names, benign_class, thresholds, e.production_benign_share),
        "score_baseline": score_baseline(
            scores, labels, class_names, benign_class, thresholds, e.production_benign_share, e.baseline_bins
        ),
    }


def summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The compact part that goes into metadata.json's `evaluation` (the curves stay in the
    report's JSON beside it)."""
    per_class = {}
    for name, entry in evaluation["per_class"].items():
        per_class[name] = {k: entry[k] for k in ("support", "precision", "recall", "auc", "average_precision", "ece")}
        if "thresholds" in entry:
            per_class[name]["thresholds"] = entry["thresholds"]
    return {
        "examples": evaluation["examples"],
        "class_counts": evaluation["class_counts"],
        "accuracy": evaluation["accuracy"],
        "confusion": evaluation["confusion"],
        "top_label_ece": evaluation["top_label_ece"],
        "per_class": per_class,
        "threshold_policy": evaluation["threshold_policy"],
        "workload": evaluation["workload"],
        "policy": evaluation["policy"],
    }


# ---------------------------------------------------------------------------------------------
# Scoring models


def score_keras(model: Any, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def score_version(version_dir: str | os.PathLike[str], images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Scores from a published version's SavedModel (it resizes inputs of another size itself)."""
    from model.export import load_serving_fn
    from model.repository import OUTPUT_NAME

    fn = load_serving_fn(version_dir)
    out = [
        np.asarray(fn(images=images[i : i + batch_size])[OUTPUT_NAME], dtype=np.float32)
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
