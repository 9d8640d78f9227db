"""The fusion's inputs: one fixed-length vector per image from the CNN's personal_info score and
what the reader found. Training and serving both build it here, so the fitted weights always
meet the features they were fitted on; the names travel with the weights in the version's
metadata and a model whose names differ is refused rather than fed the wrong columns."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from model.reader.types import CueWord, EntityType, Finding, ReadingStatus, TextLine

ENTITIES = tuple(EntityType)
# Cue categories the recognizers report that the fusion weighs; others are shown to operators
# but not fed to the model (a new category must not shift an old model's inputs).
CUES = ("phone", "contact", "email", "address", "postal", "ship_to", "name", "messenger")

FEATURE_NAMES: tuple[str, ...] = (
    "cnn_logit",
    "gate",
    "read",
    "incomplete",
    "log_lines",
    "log_chars",
    "digit_share",
    "mean_line_score",
    *(f"max_{e.value.lower()}" for e in ENTITIES),
    *(f"count_{e.value.lower()}" for e in ENTITIES),
    *(f"cue_{c}" for c in CUES),
)
# Everything but the CNN's column: what the reader alone contributes (cached by training).
READER_FEATURES = FEATURE_NAMES[1:]


def logit(p: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def reader_vector(
    status: ReadingStatus,
    gate_score: float,
    lines: tuple[TextLine, ...],
    findings: tuple[Finding, ...],
    cues: tuple[CueWord, ...],
    counted: Collection[EntityType] = ENTITIES,
) -> np.ndarray:
    """READER_FEATURES for one image. Findings of types the deployment does not count are left
    out here, so they cannot raise the score (they are still reported)."""
    chars = sum(len(line.text) for line in lines)
    digits = sum(ch.isdigit() for line in lines for ch in line.text)
    maxima = dict.fromkeys(ENTITIES, 0.0)
    counts = dict.fromkeys(ENTITIES, 0)
    for finding in findings:
        if finding.entity in counted:
            maxima[finding.entity] = max(maxima[finding.entity], finding.confidence)
            counts[finding.entity] += 1
    cue_set = {cue.category for cue in cues}
    values = [
        gate_score,
        1.0 if status in (ReadingStatus.READ, ReadingStatus.BUDGET_EXCEEDED) else 0.0,
        1.0 if status.incomplete else 0.0,
        math.log1p(len(lines)),
        math.log1p(chars),
        digits / chars if chars else 0.0,
        float(np.mean([line.score for line in lines])) if lines else 0.0,
        *(maxima[e] for e in ENTITIES),
        *(math.log1p(counts[e]) for e in ENTITIES),
        *(1.0 if c in cue_set else 0.0 for c in CUES),
    ]
    return np.asarray(values, dtype=np.float32)


def fusion_vector(cnn_personal_info: float, reader: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray([logit(cnn_personal_info)], np.float32), reader])
