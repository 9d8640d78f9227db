"""A deterministic generator of labelled demo images, for building a model with no real data.

Classes, in model order:

- ``ham``: real photographs (random crops of the wallpapers under /usr/share/backgrounds/mate
  and of scikit-image's bundled sample photos), plus hard negatives: ordinary text with no
  personal data (menus, signs, captions, sayings, prose; English and Japanese) on plain,
  paper-like and photographic backgrounds.
- ``sexual``: a SYNTHETIC STAND-IN. The demo contains no sexual content at all. Images of this
  class are dominated by one to four large, smooth, softly shaded ellipses in a range of human
  skin tones, over a photo or a plain background. A model trained on this data learns to detect
  that stand-in (large smooth skin-coloured blobs), NOT real sexual content, and must never be
  used to moderate real traffic; it exists so the service, the thresholds and the feedback loop
  can be exercised end to end.
- ``personal_info``: rendered synthetic personal data (person names, phone numbers, e-mail and
  postal addresses, English and Japanese; see training/demo_content.py) on the same kinds of
  backgrounds as the text negatives, at varied sizes, colours and rotations up to 15 degrees.
  Nine in ten are laid out as a contact or profile card (a rounded panel with a generic avatar
  silhouette beside the text), one in ten as bare lines of text.

What the demo model can and cannot learn: telling a phone number from a menu line needs reading,
and the six-layer CNN does not learn to read 128-pixel text from a few thousand images in the
few CPU minutes the demo allows (measured: bare-text personal data stays near chance against the
text negatives). It does learn the card layout within two epochs. So the demo's personal_info
detector is in effect a contact-card detector that ignores menus, signs, captions and prose; the
bare-text tenth stays in the data so that the held-out figures show this limit rather than
hide it.

Every image is a function of (seed, class, index) only, so a dataset is reproducible however
the work is split across processes. Images are written as JPEG or PNG files of 96..640 pixels a
side with varied aspect ratios, and listed in labels.csv (path, label, post_id); the images of
one post share a label, so splitting by post can be stratified."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training import demo_render
from training.demo_content import benign_text, personal_text

CLASS_NAMES = ("ham", "sexual", "personal_info")
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
# Part of the manifest: bump it when the images a (seed, class, index) yields change, so a
# cached dataset made by older code is regenerated.
GENERATOR_VERSION = 11

# Share of personal-data images drawn as contact cards rather than as bare lines of text; see
# the module docstring for why.
CARD_SHARE = 0.9
# Share of ham images that are text without personal data rather than photos.
HAM_TEXT_SHARE = 0.7
MIN_SIDE, MAX_SIDE = 96, 640
# The server squashes every image to a square, so the aspect ratio sets how much glyphs are
# squeezed; beyond 3:2 digits blur into look-alike strokes at 128 pixels.
MAX_ASPECT = 1.5


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str
    post_id: str


def image_rng(seed: int, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, CLASS_NAMES.index(label), index])


def generate_image(seed: int, label: str, index: int) -> tuple[bytes, str]:
    """Encoded bytes and file extension ("jpg" or "png") of image `index` of class `label`."""
    rng = image_rng(seed, label, index)
    width, height = _random_size(rng)
    if label == "ham":
        is_text = rng.random() < HAM_TEXT_SHARE
        img = _text_image(rng, width, height, benign_text) if is_text else demo_render.photo_crop(rng, width, height)
    elif label == "personal_info":
        is_text = True
        if rng.random() < CARD_SHARE:
            lines, lang = personal_text(rng)
            img, _ = demo_render.text_background(rng, width, height)
            demo_render.draw_contact_card(rng, img, lines, lang)
        else:
            img = _text_image(rng, width, height, personal_text)
    elif label == "sexual":
        is_text = False
        img = demo_render.skin_blobs(rng, width, height)
    else:
        raise ValueError(f"unknown class {label!r}, expected one of {CLASS_NAMES}")
    # Screenshots of text are mostly PNG and photos mostly JPEG, but not so reliably that the
    # container format could stand in for the content.
    png = rng.random() < (0.45 if is_text else 0.2)
    buf = io.BytesIO()
    if png:
        img.save(buf, "PNG", compress_level=3)
    else:
        img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    return buf.getvalue(), "png" if png else "jpg"


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    long_side = np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE)))
    aspect = np.exp(rng.uniform(np.log(1 / MAX_ASPECT), np.log(MAX_ASPECT)))
    width, height = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    return int(np.clip(width, MIN_SIDE, MAX_SIDE)), int(np.clip(height, MIN_SIDE, MAX_SIDE))


def _text_image(rng: np.random.Generator, width: int, height: int, make_text) -> Image.Image:
    lines, lang = make_text(rng)
    img, on_photo = demo_render.text_background(rng, width, height)
    demo_render.draw_text(rng, img, lines, lang, on_photo)
    return img


def _post_ids(seed: int, label: str, count: int) -> list[str]:
    """Groups a class's images into posts of one to three consecutive images."""
    rng = np.random.default_rng([seed, CLASS_NAMES.index(label), 1 << 30])
    ids: list[str] = []
    post = 0
    while len(ids) < count:
        ids.extend([f"demo-{label}-{post:05d}"] * int(rng.integers(1, 4)))
        post += 1
    return ids[:count]


def _write_one(args: tuple[Path, int, str, int]) -> str:
    out_dir, seed, label, index = args
    data, ext = generate_image(seed, label, index)
    rel = Path("images") / label / f"{index:05d}.{ext}"
    (out_dir / rel).write_bytes(data)
    return rel.as_posix()


def write_demo_dataset(
    out_dir: str | os.PathLike[str],
    per_class: int,
    seed: int = 0,
    workers: int | None = None,
    reuse: bool = True,
) -> Path:
    """Writes `per_class` images of every class and labels.csv into `out_dir`; returns the CSV.

    With `reuse`, a dataset already there from the same (per_class, seed, generator version)
    is kept as is. `workers` processes render in parallel (default: one per CPU; 1 renders
    in this process)."""
    out = Path(out_dir)
    manifest = {
        "per_class": per_class,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "classes": list(CLASS_NAMES),
    }
    manifest_path = out / MANIFEST_FILE
    if reuse and (out / LABELS_FILE).is_file() and _read_manifest(manifest_path) == manifest:
        return out / LABELS_FILE
    # Only what this function writes is removed, in case out_dir was pointed somewhere shared.
    for owned in (manifest_path, out / LABELS_FILE):
        owned.unlink(missing_ok=True)
    shutil.rmtree(out / "images", ignore_errors=True)
    for label in CLASS_NAMES:
        (out / "images" / label).mkdir(parents=True, exist_ok=True)

    tasks = [(out, seed, label, i) for label in CLASS_NAMES for i in range(per_class)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1:
        paths = [_write_one(t) for t in tasks]
    else:
        # spawn rather than fork: the caller may already run TensorFlow's thread pools, which
        # a forked child would inherit in a locked state.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            paths = pool.map(_write_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))

    with open(out / LABELS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "post_id"])
        posts = {label: _post_ids(seed, label, per_class) for label in CLASS_NAMES}
        for path, (_, _, label, index) in zip(paths, tasks, strict=True):
            writer.writerow([path, label, posts[label][index]])
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return out / LABELS_FILE


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_labels(csv_path: str | os.PathLike[str]) -> list[LabelledImage]:
    """Rows of a labels.csv, with paths resolved against the CSV's directory."""
    base = Path(csv_path).parent
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [LabelledImage(base / row["path"], row["label"], row["post_id"]) for row in csv.DictReader(f)]


def class_counts(rows: Iterable[LabelledImage]) -> dict[str, int]:
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for row in rows:
        counts[row.label] += 1
    return counts
