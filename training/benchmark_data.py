"""The demo benchmark's images: the demo generator's (training/demo_data.py) plus harder variants
built from the same drawing primitives (training/demo_render.py) and synthetic text
(training/demo_content.py):

- ``screenshot``: a chat-app screenshot; for personal_info one bubble carries a phone number or
  an e-mail address, for ham every bubble is ordinary text.
- ``small_text``: a text block covering a small part of a busy photograph.
- ``rotated_text``: a text block turned by 20 to 45 degrees.
- ``busy_photo`` (personal_info): personal data written straight onto a photograph, with no
  backing box to set it off.

Like the demo data, every image is a function of (seed, class, index) only, and the personal
data is invented (demo_content.py). labels.csv gets a `variant` column so errors can be broken
down by kind of image."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training import demo_data, demo_render
from training.demo_content import benign_text, personal_text

GENERATOR_VERSION = 1
# Share of each class's images per variant; "standard" is demo_data.generate_image.
VARIANTS = {
    "ham": {"standard": 0.55, "screenshot": 0.15, "small_text": 0.15, "rotated_text": 0.15},
    "personal_info": {
        "standard": 0.4,
        "screenshot": 0.15,
        "small_text": 0.15,
        "rotated_text": 0.15,
        "busy_photo": 0.15,
    },
    "sexual": {"standard": 1.0},
}


def variant_of(label: str, index: int, per_class: int) -> str:
    """Variants in contiguous index ranges, so the mix is exact for any per_class."""
    position = (index + 0.5) / per_class
    edge = 0.0
    for name, share in VARIANTS[label].items():
        edge += share
        if position < edge:
            return name
    return "standard"


def _rng(seed: int, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, demo_data.CLASS_NAMES.index(label), index, 0xBE7C])


def _fonts(lang: str) -> tuple[Path, ...]:
    return demo_render.CJK_FONTS if lang == "ja" else demo_render.LATIN_FONTS + demo_render.CJK_FONTS[:1]


def _text_for(label: str, rng: np.random.Generator) -> tuple[list[str], str]:
    return personal_text(rng) if label == "personal_info" else benign_text(rng)


def small_text(rng: np.random.Generator, label: str, width: int, height: int) -> Image.Image:
    img = demo_render.photo_crop(rng, width, height)
    box_w = int(width * rng.uniform(0.28, 0.45))
    box_h = int(height * rng.uniform(0.15, 0.3))
    x = int(rng.integers(0, width - box_w + 1))
    y = int(rng.integers(0, height - box_h + 1))
    region = img.crop((x, y, x + box_w, y + box_h))
    lines, lang = _text_for(label, rng)
    demo_render.draw_text(rng, region, lines, lang, on_photo=True)
    img.paste(region, (x, y))
    return img


def rotated_text(rng: np.random.Generator, label: str, width: int, height: int) -> Image.Image:
    img, on_photo = demo_render.text_background(rng, width, height)
    side = int(min(width, height) * rng.uniform(0.6, 0.85))
    region = (
        img.resize((side, side), Image.Resampling.BILINEAR)
        if on_photo
        else demo_render.plain_background(rng, side, side)
    )
    lines, lang = _text_for(label, rng)
    demo_render.draw_text(rng, region, lines, lang, on_photo)
    angle = float(rng.uniform(20, 45)) * (1 if rng.random() < 0.5 else -1)
    turned = region.convert("RGBA").rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    fit = min(1.0, width / turned.width, height / turned.height)
    turned = turned.resize(
        (max(1, int(turned.width * fit)), max(1, int(turned.height * fit))), Image.Resampling.BILINEAR
    )
    x = int(rng.integers(0, width - turned.width + 1))
    y = int(rng.integers(0, height - turned.height + 1))
    img.paste(turned, (x, y), turned)
    return img


def busy_photo(rng: np.random.Generator, label: str, width: int, height: int) -> Image.Image:
    img = demo_render.photo_crop(rng, width, height)
    lines, lang = _text_for(label, rng)
    fonts = _fonts(lang)
    path = fonts[int(rng.integers(len(fonts)))]
    ref = demo_render.font(path, 100)
    widest = max(ref.getlength(line) for line in lines) / 100
    size = int(np.clip(width * rng.uniform(0.5, 0.9) / widest, 9, height / (1.4 * len(lines)))) // 2 * 2
    face = demo_render.font(path, max(size, 9))
    draw = ImageDraw.Draw(img)
    ink = tuple(int(c) for c in (rng.uniform(0, 70, 3) if rng.random() < 0.5 else rng.uniform(190, 255, 3)))
    block_h = int(size * 1.3 * len(lines))
    x0 = int(rng.integers(0, max(1, width - int(widest * size)) + 1))
    y0 = int(rng.integers(0, max(1, height - block_h) + 1))
    for i, line in enumerate(lines):
        draw.text((x0, y0 + int(i * size * 1.3)), line, font=face, fill=ink)
    return img


def screenshot(rng: np.random.Generator, label: str, width: int, height: int) -> Image.Image:
    """A phone chat screen: a title bar and speech bubbles of ordinary text; for personal_info
    one of them (not the first) holds the personal data."""
    dark = rng.random() < 0.3
    bg = (24, 24, 28) if dark else tuple(int(c) for c in rng.uniform(235, 255, 3))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    bar_h = max(14, height // 12)
    accent = tuple(int(c) for c in rng.uniform(30, 200, 3))
    draw.rectangle((0, 0, width, bar_h), fill=accent)
    bubbles = int(rng.integers(3, 6))
    personal_at = int(rng.integers(1, bubbles)) if label == "personal_info" else -1
    y = bar_h + 6
    slot = (height - y) // bubbles
    for i in range(bubbles):
        lines, lang = personal_text(rng) if i == personal_at else benign_text(rng)
        lines = lines[:2]
        path = _fonts(lang)[0]
        ref = demo_render.font(path, 100)
        widest = max(ref.getlength(line) for line in lines) / 100
        size = int(np.clip(width * 0.62 / widest, 9, slot / (1.5 * len(lines)))) // 2 * 2
        face = demo_render.font(path, max(size, 9))
        text_w = int(max(face.getlength(line) for line in lines))
        bubble_w, bubble_h = text_w + 12, int(size * 1.3 * len(lines)) + 8
        mine = rng.random() < 0.5
        x = width - bubble_w - 6 if mine else 6
        fill = accent if mine else ((60, 60, 66) if dark else (225, 228, 232))
        draw.rounded_rectangle((x, y, x + bubble_w, y + bubble_h), radius=8, fill=fill)
        ink = (255, 255, 255) if mine or dark else (20, 20, 20)
        for j, line in enumerate(lines):
            draw.text((x + 6, y + 4 + int(j * size * 1.3)), line, font=face, fill=ink)
        y += max(slot, bubble_h + 6)
        if y >= height:
            break
    return img


_DRAW = {"small_text": small_text, "rotated_text": rotated_text, "busy_photo": busy_photo, "screenshot": screenshot}


def generate(seed: int, label: str, index: int, per_class: int) -> tuple[bytes, str, str]:
    """(encoded bytes, extension, variant) of benchmark image `index` of class `label`."""
    variant = variant_of(label, index, per_class)
    if variant == "standard":
        data, ext = demo_data.generate_image(seed, label, index)
        return data, ext, variant
    rng = _rng(seed, label, index)
    if variant == "screenshot":
        height = int(rng.integers(400, 641))
        width = int(height * rng.uniform(0.46, 0.6))
    else:
        width, height = int(rng.integers(160, 641)), int(rng.integers(160, 641))
    img = _DRAW[variant](rng, label, width, height)
    png = variant == "screenshot" or rng.random() < 0.3
    buffer = io.BytesIO()
    if png:
        img.save(buffer, "PNG", compress_level=3)
    else:
        img.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue(), "png" if png else "jpg", variant


def _write_one(args: tuple[Path, int, str, int, int]) -> tuple[str, str]:
    out, seed, label, index, per_class = args
    data, ext, variant = generate(seed, label, index, per_class)
    rel = Path("images") / label / f"{index:05d}.{ext}"
    (out / rel).write_bytes(data)
    return rel.as_posix(), variant


def write_benchmark_dataset(
    out_dir: str | os.PathLike[str], per_class: int, seed: int = 7, workers: int | None = None
) -> Path:
    """Writes the images and labels.csv (path, label, post_id, variant); returns the CSV. A
    complete set from the same parameters is reused."""
    out = Path(out_dir)
    manifest = {
        "per_class": per_class,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "demo_generator_version": demo_data.GENERATOR_VERSION,
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
        writer = csv.writer(f)
        writer.writerow(["path", "label", "post_id", "variant"])
        post, left, current = 0, 0, None
        for (rel, variant), (_, _, label, _, _) in zip(written, tasks, strict=True):
            if left == 0 or current != (label, variant):
                post, left, current = post + 1, int(rng.integers(1, 4)), (label, variant)
            writer.writerow([rel, label, f"bench-{post:06d}", variant])
            left -= 1
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return labels_path
