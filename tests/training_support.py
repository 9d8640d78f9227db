"""Hand-built images and audit records for the training tests (tests/test_training_*.py)."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from server.audit.records import AuditReason, AuditRecord, Verdict

CLASSES = ("ham", "sexual", "personal_info")
# Tints that a CNN tells apart within a few smoke-sized epochs: the end-to-end tests need a
# candidate that is clearly better than a constant model, not a good moderation model.
TINTS = {"ham": (40, 170, 60), "sexual": (200, 60, 50), "personal_info": (50, 70, 200)}


def pattern_image(seed: int, size: tuple[int, int] = (96, 80), tint: tuple[int, int, int] | None = None) -> Image.Image:
    """A smooth random pattern: distinct seeds give perceptual hashes about 32 bits apart."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(low, dtype=np.float32)
    if tint is not None:
        pixels = 0.45 * pixels + 0.55 * np.array(tint, np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str = "PNG", quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def near_duplicate(img: Image.Image) -> bytes:
    """The same picture re-uploaded: rescaled, a little brighter, re-encoded as JPEG."""
    smaller = img.resize((int(img.width * 0.9), int(img.height * 0.9)), Image.Resampling.BILINEAR)
    return encode(ImageEnhance.Brightness(smaller).enhance(1.04), "JPEG", 80)


def class_image(label: str, seed: int) -> bytes:
    return encode(pattern_image(seed * 7919 + CLASSES.index(label), tint=TINTS[label]))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def audit_record(post_id: str, image_id: str, url: str, data: bytes, model_version: str = "1") -> AuditRecord:
    return AuditRecord(
        request_id=f"req-{post_id}",
        post_id=post_id,
        image_id=image_id,
        url=url,
        content_sha256=hashlib.sha256(data).hexdigest(),
        scores={c: 1 / 3 for c in CLASSES},
        top_class="ham",
        decision="REVIEW",
        reason=AuditReason.FLAGGED,
        model_name="moderation",
        model_version=model_version,
        created_at=time.time(),
    )


def judge(store, records: list[AuditRecord], labels: list[str], operator: str = "alice") -> None:
    verdicts = [
        Verdict(label=label, operator=operator, record_id=r.record_id) for r, label in zip(records, labels, strict=True)
    ]
    results = store.submit_verdicts(verdicts)
    assert all(r.outcome.value == "applied" for r in results), results
