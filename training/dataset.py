"""Labelled image files -> arrays the model trains on, and the split into train / held-out.

Images are decoded with the server's own decoder (model.preprocess.decode_image), so training sees
exactly the pixels the service will feed the model. The split is by post: all images of one post
land on the same side, so near-duplicates within a post cannot leak into the held-out set."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

import numpy as np

from model.preprocess import decode_image


def _decode_file(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    with open(path, "rb") as f:
        return decode_image(f.read(), (size, size))


def decode_files(paths: Sequence[str | os.PathLike[str]], size: int, workers: int | None = None) -> np.ndarray:
    """uint8 [N, size, size, 3], in the order of `paths`. Raises server.errors.ImageError."""
    tasks = [(os.fspath(p), size) for p in paths]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(tasks) < 64:
        images = [_decode_file(t) for t in tasks]
    else:
        # spawn: a forked child would inherit TensorFlow's thread pools if the caller runs it.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            images = pool.map(_decode_file, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(images)


def read_verdict_export(path: str | os.PathLike[str]) -> list:
    """The labelled rows of a verdict export (`python -m server.audit.cli export-verdicts`,
    JSONL or CSV) as training.audit_log.AuditLabel, before the noise rules; malformed rows are
    left out. The retraining pipeline (training/dataset_builder.py) goes on from there."""
    from training.audit_log import read_export

    return read_export(path)[0]


def split_by_post(
    post_ids: Sequence[str], labels: Sequence[int], held_out_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out). Stratified: each class's posts are split separately, by the
    class of the post's first image, so every class is on both sides when it has two posts."""
    post_class: dict[str, int] = {}
    for post, label in zip(post_ids, labels, strict=True):
        post_class.setdefault(post, int(label))
    rng = np.random.default_rng(seed)
    held_posts: set[str] = set()
    for cls in sorted(set(post_class.values())):
        posts = sorted(p for p, c in post_class.items() if c == cls)
        count = round(held_out_fraction * len(posts))
        if len(posts) >= 2:
            count = min(max(count, 1), len(posts) - 1)
        held_posts.update(rng.permutation(posts)[:count].tolist())
    held = np.array([p in held_posts for p in post_ids], dtype=bool)
    return np.flatnonzero(~held), np.flatnonzero(held)
