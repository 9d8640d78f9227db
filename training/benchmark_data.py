"""The demo benchmark's held-out images: the same kinds of image as the demo generator
(training/demo_data.py, drawn by training/demo_kinds.py), but drawn only with the held-out fonts
and photos (training/demo_fonts.py, demo_render.PHOTO_HELDOUT), which the training data never
uses, so the benchmark measures typefaces and backgrounds a model has not seen.

Every other image (odd indices) is drawn in the hard setting: more small text (about a fifth
below a 10-pixel x-height), turns up to 45 degrees, stronger perspective and more blur, noise
and JPEG artefacts. The mix of kinds (VARIANTS) leans a little more on the hard negatives and
the hard personal_info kinds than the training mix does, and keeps a quarter of ham as plain
photos.

Like the demo data, every image is a function of (seed, class, index) only, and the personal
data is invented (demo_content.py). labels.csv has path, label, post_id, then variant (the
kind of image, so errors can be broken down by it), kind (the same), hard (1 for the hard
setting), and has_text, entities, text_px, fonts and backgrounds as in the demo data."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np

from training import demo_data, demo_fonts, demo_render

GENERATOR_VERSION = 2
FONT_SET = "heldout"
# Share of each class's images per variant (a kind of image, see training/demo_kinds.py).
VARIANTS: dict[str, dict[str, float]] = {
    "ham": {
        "photo": 0.25,
        "photo_incidental_text": 0.06,
        "menu": 0.05,
        "receipt": 0.06,
        "timetable": 0.05,
        "news": 0.04,
        "poem": 0.04,
        "chat_ham": 0.07,
        "product_label": 0.05,
        "calendar": 0.04,
        "sports_score": 0.03,
        "sign": 0.04,
        "note_ham": 0.05,
        "card_ham": 0.05,
        "form_blank": 0.04,
        "poster_ham": 0.04,
        "social_post": 0.04,
    },
    "personal_info": {
        "business_card": 0.13,
        "contact_card": 0.05,
        "shipping_label": 0.12,
        "chat_pi": 0.13,
        "handwritten_note": 0.11,
        "jp_form": 0.11,
        "profile_bio": 0.09,
        "flyer": 0.09,
        "text_on_photo": 0.09,
        "bare_lines": 0.08,
    },
    "sexual": {"skin_blobs_photo": 0.5, "skin_blobs_plain": 0.5},
}
LABEL_COLUMNS = ("path", "label", "post_id", "variant", "kind", "hard", *demo_data.LABEL_COLUMNS[4:])


def variant_of(label: str, index: int, per_class: int) -> str:
    """Variants in contiguous index ranges, so the mix is exact for any per_class."""
    position = (index + 0.5) / per_class
    edge = 0.0
    for name, share in VARIANTS[label].items():
        edge += share
        if position < edge:
            return name
    return next(reversed(VARIANTS[label]))


def is_hard(index: int) -> bool:
    return index % 2 == 1


def _rng(seed: int, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, demo_data.CLASS_NAMES.index(label), index, 0xBE7C])


def generate_details(seed: int, label: str, index: int, per_class: int) -> demo_data.GeneratedImage:
    """Benchmark image `index` of class `label`, with its kind and what was drawn on it."""
    variant = variant_of(label, index, per_class)
    scene = demo_render.Scene(_rng(seed, label, index), FONT_SET, hard=is_hard(index))
    return demo_data.draw(scene, label, variant)


def generate(seed: int, label: str, index: int, per_class: int) -> tuple[bytes, str, str]:
    """(encoded bytes, extension, variant) of benchmark image `index` of class `label`."""
    made = generate_details(seed, label, index, per_class)
    return made.data, made.ext, made.kind


def _write_one(args: tuple[Path, int, str, int, int]) -> tuple[str, dict[str, str]]:
    out, seed, label, index, per_class = args
    made = generate_details(seed, label, index, per_class)
    rel = Path("images") / label / f"{index:05d}.{made.ext}"
    (out / rel).write_bytes(made.data)
    return rel.as_posix(), {"variant": made.kind, "hard": str(int(is_hard(index))), **made.row()}


def write_benchmark_dataset(
    out_dir: str | os.PathLike[str], per_class: int, seed: int = 7, workers: int | None = None
) -> Path:
    """Writes the images and labels.csv (see the module docstring); returns the CSV. A
    complete set from the same parameters is reused."""
    out = Path(out_dir)
    manifest = {
        "per_class": per_class,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "demo_generator_version": demo_data.GENERATOR_VERSION,
        "fonts": list(demo_fonts.names(FONT_SET)),
    }
    labels_path, manifest_path = out / demo_data.LABELS_FILE, out / demo_data.MANIFEST_FILE
    if labels_path.is_file() and manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return labels_path
    manifest_path.unlink(missing_ok=True)
    shutil.rmtree(out / "images", ignore_errors=True)
    for label in demo_data.CLASS_NAMES:
        (out / "images" / label).mkdir(parents=True, exist_ok=True)
    tasks = [(out, seed, label, i, per_class) for label in demo_data.CLASS_NAMES for i in range(per_class)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1:
        written = [_write_one(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            written = pool.map(_write_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    # Posts of one to three images of one class and one variant, as in the demo data.
    rng = np.random.default_rng([seed, 1 << 20])
    with open(labels_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        post, left, current = 0, 0, None
        for (rel, details), (_, _, label, _, _) in zip(written, tasks, strict=True):
            if left == 0 or current != (label, details["variant"]):
                post, left, current = post + 1, int(rng.integers(1, 4)), (label, details["variant"])
            writer.writerow({"path": rel, "label": label, "post_id": f"bench-{post:06d}", **details})
            left -= 1
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return labels_path
