"""A deterministic generator of labelled demo images, for building a model with no real data.

Classes, in model order, and the kinds of image in each (training/demo_kinds.py draws them;
KIND_SHARES gives the exact shares):

- ``ham``: about a third plain photographs (random crops of the wallpapers under
  /usr/share/backgrounds/mate and of scikit-image's sample photos), some with incidental text
  (date stamps, watermarks, captions); the rest hard negatives, text and layouts that look like
  personal data without being it: menus and receipts full of prices, codes, dates and times;
  departure boards and timetables; news, poems, ordinary chat screenshots; product labels with
  JAN and ISBN codes; calendars, scores, signs with opening hours; and the very layouts of the
  personal_info kinds with nothing personal in them (handwritten errands, greeting and stamp
  cards, forms whose 氏名 / 住所 / 電話番号 fields are empty, event posters, social posts).
- ``sexual``: a SYNTHETIC STAND-IN. The demo contains no sexual content at all. Images of this
  class are dominated by one to four large, smooth, softly shaded ellipses in a range of human
  skin tones, over a photo or a plain background. A model trained on this data learns to detect
  that stand-in (large smooth skin-coloured blobs), NOT real sexual content, and must never be
  used to moderate real traffic; it exists so the service, the thresholds and the feedback loop
  can be exercised end to end.
- ``personal_info``: made-up contact data (phone numbers, e-mail and postal addresses,
  messenger IDs; English and Japanese; training/demo_content.py) written in ten kinds of
  picture: business cards in several layouts, on-screen contact cards, shipping labels and
  delivery slips, chat screenshots, handwritten notes, Japanese forms and envelopes, social
  profiles, flyers, text over photos and bare lines.

Text is drawn in many fonts (print, mono, handwriting-like; training/demo_fonts.py) and sizes,
mostly legible at the image's own size (x-height 10 px and up) with a small share smaller,
mostly level with some turned up to 30 degrees, on photos, paper and plain grounds, as phone
screens or as paper photographed (perspective, shadow, blur, noise, colour casts, JPEG
artefacts). Only the training halves of the font and photo sets are used here; the other
halves are held out for the benchmark (training/benchmark_data.py).

What a model can and cannot learn from it: most personal_info kinds have a ham twin with the
same layout (cards, notes, forms, posters, chats, profiles and posts, text on photos) and the ham
text is full of digits, so neither layout nor digits alone separate the classes; reading does.
Shortcuts left: a shipping label or delivery slip, an envelope's red 〒 boxes and a flyer's
tear-off tabs have no ham twin, and every personal_info image has text while no sexual one has.
The previous generator's measurements showed the six-layer CNN does not learn to read 128-pixel
text from a few thousand images (bare-text personal data stayed near chance against the text
negatives), so expect the CNN alone to be weak on personal_info here (not yet measured on this
version); the text reader (model/reader) and the fusion are what this data is for. Every value
is invented and the layouts are drawn, not photographed, so figures on this data say how the
pipeline behaves, not how it does on traffic.

Every image is a function of (seed, class, index) only, so a dataset is reproducible however
the work is split across processes; the kind of image comes from a fixed schedule per block of
100 indices, so kind shares are exact. Images are written as JPEG or PNG files of 96..640 pixels
a side and listed in labels.csv: path, label, post_id (the images of one post share a label,
so splitting by post can be stratified), then kind, has_text, entities (the entity types drawn,
';'-separated, personal_info only), text_px (the x-height in pixels, at the image's own
size, of the smallest line with personal data, or the median line's without any; 0 without
text; see demo_fonts.x_height_ratio) and the fonts and background photos used ';'-separated.
generate() returns the same and a transcript of the lines drawn."""

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

from training import demo_fonts, demo_kinds, demo_render

CLASS_NAMES = ("ham", "sexual", "personal_info")
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
# Part of the manifest: bump it when the images a (seed, class, index) yields change, so a
# cached dataset made by older code is regenerated.
GENERATOR_VERSION = 12
FONT_SET = "train"
MIN_SIDE, MAX_SIDE = demo_render.MIN_SIDE, demo_render.MAX_SIDE
SCHEDULE_BLOCK = 100
# Shares per class, in hundredths of SCHEDULE_BLOCK. Photos keep the largest share of ham:
# most real traffic is photos.
KIND_SHARES: dict[str, dict[str, float]] = {
    "ham": {
        "photo": 0.34,
        "photo_incidental_text": 0.06,
        "menu": 0.05,
        "receipt": 0.05,
        "timetable": 0.05,
        "news": 0.04,
        "poem": 0.03,
        "chat_ham": 0.07,
        "product_label": 0.04,
        "calendar": 0.03,
        "sports_score": 0.03,
        "sign": 0.04,
        "note_ham": 0.04,
        "card_ham": 0.04,
        "form_blank": 0.03,
        "poster_ham": 0.03,
        "social_post": 0.03,
    },
    "sexual": {"skin_blobs_photo": 0.5, "skin_blobs_plain": 0.5},
    "personal_info": {
        "business_card": 0.15,
        "contact_card": 0.06,
        "shipping_label": 0.12,
        "chat_pi": 0.13,
        "handwritten_note": 0.10,
        "jp_form": 0.10,
        "profile_bio": 0.09,
        "flyer": 0.09,
        "text_on_photo": 0.08,
        "bare_lines": 0.08,
    },
}
LABEL_COLUMNS = ("path", "label", "post_id", "kind", "has_text", "entities", "text_px", "fonts", "backgrounds")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str
    post_id: str
    kind: str = ""
    has_text: bool | None = None
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image and what was drawn on it."""

    data: bytes
    ext: str
    kind: str
    has_text: bool
    entities: tuple[str, ...]
    text_px: float
    fonts: tuple[str, ...]
    backgrounds: tuple[str, ...]
    # Every line drawn, with the entity types it carries: a transcript of the image.
    lines: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def row(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "has_text": str(int(self.has_text)),
            "entities": ";".join(self.entities),
            "text_px": f"{self.text_px:.1f}",
            "fonts": ";".join(self.fonts),
            "backgrounds": ";".join(self.backgrounds),
        }


def image_rng(seed: int, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, CLASS_NAMES.index(label), index])


def schedule(shares: dict[str, float], block: int = SCHEDULE_BLOCK) -> list[str]:
    """`block` kind names with the given shares (rounded to whole images)."""
    kinds = [name for name, share in shares.items() for _ in range(round(share * block))]
    if len(kinds) != block:
        raise ValueError(f"kind shares must add up to 1 in steps of 1/{block}: {shares}")
    return kinds


def kind_of(seed: int, label: str, index: int) -> str:
    """The kind of image `index` of class `label`: each block of SCHEDULE_BLOCK indices holds
    every kind in its exact share, in an order shuffled per block."""
    if label not in KIND_SHARES:
        raise ValueError(f"unknown class {label!r}, expected one of {CLASS_NAMES}")
    block, offset = divmod(index, SCHEDULE_BLOCK)
    order = np.random.default_rng([seed, CLASS_NAMES.index(label), block, 0x4B1D]).permutation(
        schedule(KIND_SHARES[label])
    )
    return str(order[offset])


def encode(rng: np.random.Generator, img: Image.Image, png_share: float) -> tuple[bytes, str]:
    png = rng.random() < png_share
    buf = io.BytesIO()
    if png:
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    return buf.getvalue(), "png" if png else "jpg"


def draw(scene: demo_render.Scene, label: str, kind: str) -> GeneratedImage:
    img = demo_kinds.render_kind(scene, label, kind)
    # Screenshots are mostly PNG, photos and photographed paper mostly JPEG, but not so reliably
    # that the container format could stand in for the content (screens are in every class but
    # sexual, and ham and personal_info share every other kind of look).
    png_share = 0.6 if kind in demo_kinds.SCREENSHOT_KINDS else (0.15 if scene.has_text else 0.2)
    data, ext = encode(scene.rng, img, png_share)
    return GeneratedImage(
        data=data,
        ext=ext,
        kind=kind,
        has_text=scene.has_text,
        entities=scene.entities,
        text_px=scene.text_px(),
        fonts=tuple(scene.fonts),
        backgrounds=tuple(scene.backgrounds),
        lines=tuple((m.text, m.entities) for m in scene.marks),
    )


def generate(seed: int, label: str, index: int) -> GeneratedImage:
    """Image `index` of class `label`, with its kind and what was drawn on it."""
    kind = kind_of(seed, label, index)
    return draw(demo_render.Scene(image_rng(seed, label, index), FONT_SET), label, kind)


def generate_image(seed: int, label: str, index: int) -> tuple[bytes, str]:
    """Encoded bytes and file extension ("jpg" or "png") of image `index` of class `label`."""
    made = generate(seed, label, index)
    return made.data, made.ext


def _post_ids(seed: int, label: str, count: int) -> list[str]:
    """Groups a class's images into posts of one to three consecutive images."""
    rng = np.random.default_rng([seed, CLASS_NAMES.index(label), 1 << 30])
    ids: list[str] = []
    post = 0
    while len(ids) < count:
        ids.extend([f"demo-{label}-{post:05d}"] * int(rng.integers(1, 4)))
        post += 1
    return ids[:count]


def _write_one(args: tuple[Path, int, str, int]) -> tuple[str, dict[str, str]]:
    out_dir, seed, label, index = args
    made = generate(seed, label, index)
    rel = Path("images") / label / f"{index:05d}.{made.ext}"
    (out_dir / rel).write_bytes(made.data)
    return rel.as_posix(), made.row()


def manifest_for(per_class: int, seed: int) -> dict:
    return {
        "per_class": per_class,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "classes": list(CLASS_NAMES),
        # Another set of installed fonts draws other images.
        "fonts": list(demo_fonts.names(FONT_SET)),
    }


def write_demo_dataset(
    out_dir: str | os.PathLike[str],
    per_class: int,
    seed: int = 0,
    workers: int | None = None,
    reuse: bool = True,
) -> Path:
    """Writes `per_class` images of every class and labels.csv into `out_dir`; returns the CSV.

    With `reuse`, a dataset already there from the same (per_class, seed, generator version,
    fonts) is kept as is. `workers` processes render in parallel (default: one per CPU; 1
    renders in this process)."""
    out = Path(out_dir)
    manifest = manifest_for(per_class, seed)
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
        written = [_write_one(t) for t in tasks]
    else:
        # spawn rather than fork: the caller may already run TensorFlow's thread pools, which
        # a forked child would inherit in a locked state.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            written = pool.map(_write_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))

    with open(out / LABELS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        posts = {label: _post_ids(seed, label, per_class) for label in CLASS_NAMES}
        for (path, details), (_, _, label, index) in zip(written, tasks, strict=True):
            writer.writerow({"path": path, "label": label, "post_id": posts[label][index], **details})
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return out / LABELS_FILE


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_labels(csv_path: str | os.PathLike[str]) -> list[LabelledImage]:
    """Rows of a labels.csv, with paths resolved against the CSV's directory. The kind,
    has_text and entities columns are optional (older files have only the first three)."""
    base = Path(csv_path).parent
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            has_text = row.get("has_text")
            rows.append(
                LabelledImage(
                    base / row["path"],
                    row["label"],
                    row["post_id"],
                    kind=row.get("kind") or "",
                    has_text=None if has_text in (None, "") else has_text == "1",
                    entities=tuple(e for e in (row.get("entities") or "").split(";") if e),
                )
            )
    return rows


def class_counts(rows: Iterable[LabelledImage]) -> dict[str, int]:
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for row in rows:
        counts[row.label] += 1
    return counts
