"""Promotion: publish a candidate as version N+1 only if it is not worse than the serving one.

Both are scored on the same frozen evaluation split. The candidate is refused when any class's
ROC AUC drops by more than `max_auc_drop`, or the workload figure (share of images passed with
no human look at the miss budget) drops by more than `max_workload_drop`. `force` publishes
anyway; every decision, forced or not, is appended to the promotion log (JSON lines).
Publishing goes through model/export.py, which builds the version under a temporary name and
renames it into place, so a server polling the repository never sees half a version."""

from __future__ import annotations

import datetime
import getpass
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import PromoteConfig


@dataclass
class Decision:
    accept: bool
    reasons: list[str] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"accept": self.accept, "reasons": self.reasons}


def compare(
    candidate: dict[str, Any],
    serving: dict[str, Any] | None,
    cfg: PromoteConfig,
    candidate_classes: list[str] | None = None,
    serving_classes: list[str] | None = None,
) -> Decision:
    """Decides from two evaluations (training/evaluate.py's evaluate_scores) of the same images."""
    if serving is None:
        return Decision(True, ["no serving version: the candidate becomes the first"])
    if candidate_classes is not None and serving_classes is not None and candidate_classes != serving_classes:
        return Decision(
            False,
            [
                f"class list changed from {serving_classes} to {candidate_classes}: the figures "
                "are not comparable (use --force to publish anyway)"
            ],
        )
    reasons: list[str] = []
    refusals: list[str] = []
    auc: dict[str, Any] = {}
    for name, entry in candidate["per_class"].items():
        new = entry["auc"]
        old = serving["per_class"].get(name, {}).get("auc", float("nan"))
        delta = new - old
        auc[name] = {"serving": old, "candidate": new, "delta": delta}
        if math.isnan(delta):
            reasons.append(f"{name}: AUC not comparable (a class missing from the evaluation split)")
        elif delta < -cfg.max_auc_drop:
            refusals.append(f"{name} AUC drops from {old:.4f} to {new:.4f} ({delta:+.4f}, margin {cfg.max_auc_drop})")
    new_w, old_w = candidate["workload"]["pass_share"], serving["workload"]["pass_share"]
    workload = {"serving": old_w, "candidate": new_w, "delta": new_w - old_w}
    if new_w - old_w < -cfg.max_workload_drop:
        refusals.append(
            f"workload figure drops from {100 * old_w:.2f}% to {100 * new_w:.2f}% of images passed "
            f"unseen (margin {100 * cfg.max_workload_drop:.2f} points)"
        )
    comparison = {"auc": auc, "workload": workload}
    if refusals:
        return Decision(False, refusals + reasons, comparison)
    worst = min((v["delta"] for v in auc.values() if not math.isnan(v["delta"])), default=0.0)
    reasons.insert(
        0,
        f"no class's AUC drops by more than {cfg.max_auc_drop} (worst change {worst:+.4f}); "
        f"workload {100 * old_w:.2f}% -> {100 * new_w:.2f}%",
    )
    return Decision(True, reasons, comparison)


def log_decision(cfg: PromoteConfig, entry: dict[str, Any]) -> None:
    path = Path(cfg.log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    line = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "user": user, **entry}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
