"""Deterministic audit sampling of PASS decisions.

Keyed by the image's content hash so a re-upload of the same bytes gets the same answer: a
bad actor cannot retry until an image slips past the audit, and every replica agrees."""

from __future__ import annotations

import hashlib


def sample_score(content_sha256: str, salt: str = "") -> float:
    """A number in [0, 1) that is uniform over content hashes."""
    digest = content_sha256 if not salt else hashlib.sha256((salt + content_sha256).encode()).hexdigest()
    return int(digest[:16], 16) / float(1 << 64)


def is_sampled(content_sha256: str, rate: float, salt: str = "") -> bool:
    return rate > 0 and sample_score(content_sha256, salt) < rate
