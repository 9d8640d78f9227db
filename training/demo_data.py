"""A deterministic generator of labelled demo images, for building a model with no real data.

Classes, in model order:

- ``ham``: real photographs (random crops of the wallpapers under /usr/share/backgrounds/mate
  and of scikit-image's bundled sample photos), plus hard negatives: ordinary text with no
  personal data (menus, signs, captions, sayings; English and Japanese) on plain, paper-like
  and photographic backgrounds.
- ``sexual``: a SYNTHETIC STAND-IN. The demo contains no sexual content at all. Images of this
  class are dominated by one to four large, smooth, softly shaded ellipses in a range of human
  skin tones, over a photo or a plain background. A model trained on this data learns to detect
  that stand-in (large smooth skin-coloured blobs), NOT real sexual content, and must never be
  used to moderate real traffic; it exists so the service, the thresholds and the feedback loop
  can be exercised end to end.
- ``personal_info``: rendered synthetic personal data (person names, phone numbers, e-mail and
  postal addresses, English and Japanese; see training/demo_content.py) on the same kinds of
  backgrounds as the text negatives, at varied sizes, colours and rotations up to 15 degrees.

Every image is a function of (seed, class, index) only, so a dataset is reproducible however
the work is split across processes. Images are written as JPEG or PNG files of 96..640 pixels a
side with varied aspect ratios, and listed in labels.csv (path, label, post_id); the images of
one post share a label, so splitting by post can be stratified."""

from __future__ import annotations

import csv
import functools
import io
import json
import multiprocessing
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.demo_content import benign_text, personal_text

CLASS_NAMES = ("ham", "sexual", "personal_info")
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
# Part of the manifest: bump it when the images a (seed, class, index) yields change, so a
# cached dataset made by older code is regenerated.
GENERATOR_VERSION = 2

PHOTO_DIR = Path("/usr/share/backgrounds/mate")
# The same photos also come in 3840- and 5640-pixel copies that only cost decode time.
MAX_PHOTO_FILE_BYTES = 4_000_000
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry")
PHOTO_MAX_SIDE = 800

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NOTO = Path("/usr/share/fonts/opentype/noto")
LATIN_FONTS = tuple(
    DEJAVU / f
    for f in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSerif-Bold.ttf")
)
# Index 0 of the Noto CJK collections is the Japanese face; it has Latin glyphs too.
CJK_FONTS = tuple(
    NOTO / f
    for f in ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc")
)

SKIN_TONES = np.array(
    [(255, 224, 196), (255, 205, 178), (241, 194, 125), (234, 192, 134), (224, 172, 105),
     (198, 134, 66), (189, 143, 110), (141, 85, 36), (120, 80, 60), (94, 58, 37)],
    dtype=np.float32,
)

# Share of ham images that are text without personal data rather than photos.
HAM_TEXT_SHARE = 0.5
MIN_SIDE, MAX_SIDE = 96, 640


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
        img = _text_image(rng, width, height, benign_text) if is_text else _photo_crop(rng, width, height)
    elif label == "personal_info":
        is_text = True
        img = _text_image(rng, width, height, personal_text)
    elif label == "sexual":
        is_text = False
        img = _skin_blobs(rng, width, height)
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
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    width, height = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    return int(np.clip(width, MIN_SIDE, MAX_SIDE)), int(np.clip(height, MIN_SIDE, MAX_SIDE))


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    """Source photos, downscaled once per process."""
    photos = []
    for path in sorted(PHOTO_DIR.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".png") or path.stat().st_size > MAX_PHOTO_FILE_BYTES:
            continue
        with Image.open(path) as img:
            img.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            img = img.convert("RGB")
            img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
            photos.append(np.asarray(img))
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        try:
            arr = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - some samples need a download; the rest suffice
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        img = Image.fromarray(np.ascontiguousarray(arr[..., :3], dtype=np.uint8))
        img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
        photos.append(np.asarray(img))
    if not photos:
        raise RuntimeError(f"no photos found under {PHOTO_DIR} nor in skimage.data")
    return tuple(photos)


def _photo_crop(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    photos = _photos()
    src = photos[int(rng.integers(len(photos)))]
    src_h, src_w = src.shape[:2]
    # Crop with the target's aspect ratio, so the crop is rescaled rather than distorted.
    scale = rng.uniform(0.35, 1.0)
    crop_w = min(src_w, max(8, int(src_w * scale)))
    crop_h = min(src_h, max(8, int(crop_w * height / width)))
    crop_w = min(crop_w, max(8, int(crop_h * width / height)))
    x = int(rng.integers(0, src_w - crop_w + 1))
    y = int(rng.integers(0, src_h - crop_h + 1))
    img = Image.fromarray(src[y : y + crop_h, x : x + crop_w]).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def _plain_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    light = rng.random() < 0.7
    base = rng.uniform(190, 255, 3) if light else rng.uniform(0, 90, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None] * rng.uniform(-25, 25, 3)
    arr = np.broadcast_to(base + ramp, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _paper_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    base = np.array([rng.uniform(225, 252), rng.uniform(215, 245), rng.uniform(185, 235)], np.float32)
    blotches = Image.fromarray(rng.uniform(-12, 12, (6, 6)).astype(np.float32), "F")
    low = np.asarray(blotches.resize((width, height), Image.Resampling.BICUBIC))[..., None]
    grain = rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    arr = base + low + grain
    if rng.random() < 0.4:
        spacing = int(rng.integers(18, 40))
        arr[spacing::spacing] -= (40, 30, 10)  # ruled notebook lines
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, bool]:
    """A background for text, and whether it is a photo."""
    kind = rng.random()
    if kind < 0.35:
        return _plain_background(rng, width, height), False
    if kind < 0.65:
        return _paper_background(rng, width, height), False
    return _photo_crop(rng, width, height), True


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=0)


def _text_image(rng: np.random.Generator, width: int, height: int, make_text) -> Image.Image:
    lines, lang = make_text(rng)
    img, on_photo = _background(rng, width, height)
    fonts = CJK_FONTS if lang == "ja" else LATIN_FONTS + CJK_FONTS[:1]
    font_path = fonts[int(rng.integers(len(fonts)))]

    # Size the block to fill most of the image, so the glyphs stay legible after the squash to
    # the model's input size whatever the image's own size and aspect ratio.
    ref = _font(font_path, 100)
    ref_width = max(ref.getlength(line) for line in lines) / 100
    line_gap = 1.3
    size = min(width * rng.uniform(0.7, 0.95) / ref_width, height * rng.uniform(0.5, 0.9) / (line_gap * len(lines)))
    size = int(np.clip(size, 9, 160)) // 2 * 2  # even sizes only, to bound the font cache
    font = _font(font_path, size)

    pad = size // 3
    line_h = int(size * line_gap)
    layer_w = int(max(font.getlength(line) for line in lines)) + 2 * pad
    layer = Image.new("RGBA", (layer_w, line_h * len(lines) + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    dark_text = float(np.asarray(img.convert("L")).mean()) > 110
    if rng.random() < (0.6 if on_photo else 0.15):
        plate = (255, 255, 255, int(rng.integers(150, 230))) if dark_text else (0, 0, 0, int(rng.integers(150, 230)))
        draw.rectangle((0, 0, layer.width, layer.height), fill=plate)
    ink = rng.uniform(0, 80, 3) if dark_text else rng.uniform(190, 255, 3)
    ink_rgba = (*(int(c) for c in ink), 255)
    stroke = int(size // 12) if rng.random() < 0.3 else 0
    centred = rng.random() < 0.5
    for i, line in enumerate(lines):
        x = pad + (layer_w - 2 * pad - font.getlength(line)) / 2 if centred else pad
        draw.text(
            (x, pad + i * line_h),
            line,
            font=font,
            fill=ink_rgba,
            stroke_width=stroke,
            stroke_fill=(255, 255, 255, 255) if dark_text else (0, 0, 0, 255),
        )

    layer = layer.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BICUBIC, expand=True)
    fit = min(1.0, width / layer.width, height / layer.height)
    if fit < 1.0:
        layer = layer.resize((max(1, int(layer.width * fit)), max(1, int(layer.height * fit))), Image.Resampling.BILINEAR)
    x = int(rng.integers(0, width - layer.width + 1))
    y = int(rng.integers(0, height - layer.height + 1))
    img.paste(layer, (x, y), layer)
    return img


def _skin_blobs(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """The stand-in for the sexual class; see the module docstring."""
    img = np.asarray(_photo_crop(rng, width, height) if rng.random() < 0.5 else _plain_background(rng, width, height))
    canvas = img.astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] + rng.uniform(-10, 10, 3)
    light = rng.uniform(-1, 1, 2)
    for blob in range(int(rng.integers(1, 5))):
        # The first blob is large and central so that skin dominates every image of the class.
        spread = 0.15 if blob == 0 else 0.45
        cx = width * (0.5 + rng.uniform(-spread, spread))
        cy = height * (0.5 + rng.uniform(-spread, spread))
        ax = width * rng.uniform(0.3, 0.6) if blob == 0 else width * rng.uniform(0.12, 0.4)
        ay = height * rng.uniform(0.3, 0.6) if blob == 0 else height * rng.uniform(0.12, 0.4)
        theta = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / ax
        v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / ay
        r = np.sqrt(u * u + v * v)
        alpha = np.clip((1.0 - r) / rng.uniform(0.05, 0.25), 0.0, 1.0)[..., None]
        dome = np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
        shade = (0.72 + 0.28 * dome + 0.12 * (u * light[0] + v * light[1]))[..., None]
        colour = tone * shade * rng.uniform(0.92, 1.08)
        canvas = canvas * (1.0 - alpha) + colour * alpha
    canvas += rng.normal(0, 2.0, canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


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
    manifest = {"per_class": per_class, "seed": seed, "generator_version": GENERATOR_VERSION, "classes": CLASS_NAMES}
    manifest_path = out / MANIFEST_FILE
    if reuse and manifest_path.is_file() and (out / LABELS_FILE).is_file():
        if json.loads(manifest_path.read_text()) == json.loads(json.dumps(manifest)):
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
        for path, (_, _, label, index) in zip(paths, tasks):
            writer.writerow([path, label, posts[label][index]])
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return out / LABELS_FILE


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
