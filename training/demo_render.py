"""Drawing primitives of the demo data generator (training/demo_data.py): photo crops,
backgrounds, text blocks and the skin-tone blob stand-in. Every function draws only from the
generator it is given, so an image depends on nothing but its own seed."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PHOTO_DIR = Path("/usr/share/backgrounds/mate")
# The same photos also come in 3840- and 5640-pixel copies that only cost decode time.
MAX_PHOTO_FILE_BYTES = 4_000_000
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
)
PHOTO_MAX_SIDE = 800

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NOTO = Path("/usr/share/fonts/opentype/noto")
LATIN_FONTS = tuple(
    DEJAVU / f
    for f in (
        "DejaVuSans.ttf",
        "DejaVuSans-Bold.ttf",
        "DejaVuSerif.ttf",
        "DejaVuSansCondensed.ttf",
    )
)
# Index 0 of the Noto CJK collections is the Japanese face; it has Latin glyphs too.
CJK_FONTS = tuple(
    NOTO / f
    for f in (
        "NotoSansCJK-Regular.ttc",
        "NotoSansCJK-Bold.ttc",
        "NotoSerifCJK-Regular.ttc",
        "NotoSerifCJK-Bold.ttc",
    )
)

SKIN_TONES = np.array(
    [
        (255, 224, 196),
        (255, 205, 178),
        (241, 194, 125),
        (234, 192, 134),
        (224, 172, 105),
        (198, 134, 66),
        (189, 143, 110),
        (141, 85, 36),
        (120, 80, 60),
        (94, 58, 37),
    ],
    dtype=np.float32,
)
# Blobs are smooth, so they are drawn at this size and scaled up: a fraction of the cost of
# evaluating every ellipse at full resolution.
BLOB_CANVAS = 160
LINE_GAP = 1.3
MAX_ROTATION_DEGREES = 15.0


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """Source photos, downscaled, loaded once per process."""
    found = []
    for path in sorted(PHOTO_DIR.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".png") or path.stat().st_size > MAX_PHOTO_FILE_BYTES:
            continue
        with Image.open(path) as img:
            img.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            img = img.convert("RGB")
            img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
            found.append(np.asarray(img))
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        try:
            arr = getattr(skimage.data, name)()
        except Exception:
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        img = Image.fromarray(np.ascontiguousarray(arr[..., :3], dtype=np.uint8))
        img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
        found.append(np.asarray(img))
    if not found:
        raise RuntimeError(f"no photos found under {PHOTO_DIR} nor in skimage.data")
    return tuple(found)


def photo_crop(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    sources = photos()
    src = sources[int(rng.integers(len(sources)))]
    src_h, src_w = src.shape[:2]
    # Crop with the target's aspect ratio, so the crop is rescaled rather than distorted.
    crop_w = min(src_w, max(8, int(src_w * rng.uniform(0.35, 1.0))))
    crop_h = min(src_h, max(8, int(crop_w * height / width)))
    crop_w = min(crop_w, max(8, int(crop_h * width / height)))
    x = int(rng.integers(0, src_w - crop_w + 1))
    y = int(rng.integers(0, src_h - crop_h + 1))
    img = Image.fromarray(src[y : y + crop_h, x : x + crop_w]).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def plain_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    light = rng.random() < 0.7
    base = rng.uniform(190, 255, 3) if light else rng.uniform(0, 90, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None] * rng.uniform(-25, 25, 3)
    arr = np.broadcast_to(base + ramp, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def paper_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    base = np.array([rng.uniform(225, 252), rng.uniform(215, 245), rng.uniform(185, 235)], np.float32)
    blotches = Image.fromarray(rng.uniform(-12, 12, (6, 6)).astype(np.float32), "F")
    low = np.asarray(blotches.resize((width, height), Image.Resampling.BICUBIC))[..., None]
    grain = rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    arr = base + low + grain
    if rng.random() < 0.4:
        spacing = int(rng.integers(18, 40))
        arr[spacing::spacing] -= (40, 30, 10)  # ruled notebook lines
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def text_background(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, bool]:
    """A plain, paper-like or photo background, and whether it is a photo."""
    kind = rng.random()
    if kind < 0.35:
        return plain_background(rng, width, height), False
    if kind < 0.65:
        return paper_background(rng, width, height), False
    return photo_crop(rng, width, height), True


@functools.cache
def font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=0)


def _split_line(line: str) -> list[str]:
    """Two halves of a line, broken at the space, '@' or '-' nearest its middle (or at the
    middle for Japanese text without any)."""
    middle = len(line) / 2
    breaks = [i for i, ch in enumerate(line) if ch in " @-" and 0 < i < len(line) - 1]
    cut = min(breaks, key=lambda i: abs(i - middle)) if breaks else int(middle)
    head, tail = line[:cut].rstrip(), line[cut:].lstrip(" ")
    return [head, tail] if head and tail else [line]


def _font_size(ref: ImageFont.FreeTypeFont, lines: Sequence[str], box_w: float, box_h: float) -> float:
    ref_width = max(ref.getlength(line) for line in lines) / ref.size
    return min(box_w / ref_width, box_h / (LINE_GAP * len(lines)))


def _text_layer(
    rng: np.random.Generator,
    lines: list[str],
    lang: str,
    box_w: float,
    box_h: float,
    dark_text: bool,
    plate: bool,
) -> Image.Image:
    """`lines` as a transparent RGBA layer about box_w x box_h: random font, colour, alignment,
    optionally on a translucent plate that keeps them legible over a busy photo."""
    fonts = CJK_FONTS if lang == "ja" else LATIN_FONTS + CJK_FONTS[:1]
    font_path = fonts[int(rng.integers(len(fonts)))]
    # Long lines are wrapped where that allows a larger font, which matters in narrow boxes.
    ref = font(font_path, 100)
    wrapped = [part for line in lines for part in (_split_line(line) if len(line) > 12 else [line])]
    if len(wrapped) <= 4 and _font_size(ref, wrapped, box_w, box_h) > 1.3 * _font_size(ref, lines, box_w, box_h):
        lines = wrapped
    size = int(np.clip(_font_size(ref, lines, box_w, box_h), 9, 160)) // 2 * 2  # even: bounds the cache
    face = font(font_path, size)

    pad = size // 3
    line_h = int(size * LINE_GAP)
    layer_w = int(max(face.getlength(line) for line in lines)) + 2 * pad
    layer = Image.new("RGBA", (layer_w, line_h * len(lines) + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if plate:
        alpha = int(rng.integers(150, 230))
        fill = (255, 255, 255, alpha) if dark_text else (0, 0, 0, alpha)
        draw.rectangle((0, 0, layer.width, layer.height), fill=fill)
    ink = rng.uniform(0, 80, 3) if dark_text else rng.uniform(190, 255, 3)
    stroke = int(size // 12) if rng.random() < 0.3 else 0
    centred = rng.random() < 0.5
    for i, line in enumerate(lines):
        x = pad + (layer_w - 2 * pad - face.getlength(line)) / 2 if centred else pad
        draw.text(
            (x, pad + i * line_h),
            line,
            font=face,
            fill=(*(int(c) for c in ink), 255),
            stroke_width=stroke,
            stroke_fill=(255, 255, 255, 255) if dark_text else (0, 0, 0, 255),
        )
    return layer


def _paste_rotated(rng: np.random.Generator, img: Image.Image, layer: Image.Image) -> None:
    """Pastes `layer` onto `img` at a random place, rotated up to MAX_ROTATION_DEGREES and
    shrunk if it would not fit."""
    width, height = img.size
    angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    fit = min(1.0, width / layer.width, height / layer.height)
    if fit < 1.0:
        size = (max(1, int(layer.width * fit)), max(1, int(layer.height * fit)))
        layer = layer.resize(size, Image.Resampling.BILINEAR)
    x = int(rng.integers(0, width - layer.width + 1))
    y = int(rng.integers(0, height - layer.height + 1))
    img.paste(layer, (x, y), layer)


def draw_text(rng: np.random.Generator, img: Image.Image, lines: list[str], lang: str, on_photo: bool) -> None:
    """Draws `lines` onto `img` in place, filling most of it so that the glyphs stay legible
    after the squash to the model's input size."""
    width, height = img.size
    dark_text = float(np.asarray(img.convert("L")).mean()) > 110
    plate = rng.random() < (0.6 if on_photo else 0.15)
    box_w, box_h = width * rng.uniform(0.7, 0.95), height * rng.uniform(0.5, 0.9)
    _paste_rotated(rng, img, _text_layer(rng, lines, lang, box_w, box_h, dark_text, plate))


def draw_contact_card(rng: np.random.Generator, img: Image.Image, lines: list[str], lang: str) -> None:
    """Draws `lines` onto `img` in place as a contact or profile card: a rounded panel with a
    generic avatar (head-and-shoulders silhouette, in colours far from skin tones) beside or
    above the text, the way personal data most often appears in screenshots."""
    width, height = img.size
    card_w = int(width * rng.uniform(0.75, 0.95))
    card_h = int(min(height * rng.uniform(0.5, 0.9), card_w * rng.uniform(0.55, 1.1)))
    dark_mode = rng.random() < 0.3
    panel = rng.uniform(25, 60, 3) if dark_mode else rng.uniform(232, 255, 3)
    card = Image.new("RGBA", (card_w, card_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(card)
    border = tuple(int(c) for c in (panel + (40 if dark_mode else -40)))
    draw.rounded_rectangle(
        (0, 0, card_w - 1, card_h - 1),
        radius=max(2, min(card_w, card_h) // 10),
        fill=(*(int(c) for c in panel), 255),
        outline=(*border, 255),
        width=max(1, min(card_w, card_h) // 80),
    )
    pad = max(3, min(card_w, card_h) // 16)
    beside = card_w >= card_h * 1.25
    diameter = int((card_h if beside else card_w) * rng.uniform(0.4, 0.6))
    if beside:
        ax, ay = pad, (card_h - diameter) // 2
        text_box = (ax + diameter + pad, pad, card_w - pad, card_h - pad)
    else:
        ax, ay = (card_w - diameter) // 2, pad
        text_box = (pad, ay + diameter + pad, card_w - pad, card_h - pad)
    card.paste(_avatar(rng, diameter), (ax, ay), _avatar_mask(diameter))
    box_w, box_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
    if box_w > 8 and box_h > 8:
        text = _text_layer(rng, lines, lang, box_w * 0.95, box_h * 0.9, not dark_mode, plate=False)
        text.thumbnail((box_w, box_h), Image.Resampling.BILINEAR)
        tx = text_box[0] + (box_w - text.width) // 2 if not beside else text_box[0]
        card.alpha_composite(text, (tx, text_box[1] + (box_h - text.height) // 2))
    _paste_rotated(rng, img, card)


AVATAR_COLOURS = np.array(
    [(158, 158, 158), (120, 144, 156), (100, 149, 237), (92, 107, 192), (129, 199, 132), (77, 182, 172)],
    dtype=np.float32,
)


def _avatar_mask(diameter: int) -> Image.Image:
    mask = Image.new("L", (diameter, diameter), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, diameter - 1, diameter - 1), fill=255)
    return mask


def _avatar(rng: np.random.Generator, diameter: int) -> Image.Image:
    background = AVATAR_COLOURS[int(rng.integers(len(AVATAR_COLOURS)))] * rng.uniform(0.85, 1.1)
    figure = np.clip(background + rng.uniform(60, 110), 0, 255) if rng.random() < 0.7 else background * 0.55
    avatar = Image.new("RGBA", (diameter, diameter), (*(int(c) for c in np.clip(background, 0, 255)), 255))
    draw = ImageDraw.Draw(avatar)
    fill = (*(int(c) for c in figure), 255)
    d = diameter
    draw.ellipse((0.32 * d, 0.16 * d, 0.68 * d, 0.52 * d), fill=fill)  # head
    draw.ellipse((0.14 * d, 0.58 * d, 0.86 * d, 1.3 * d), fill=fill)  # shoulders
    return avatar


def skin_blobs(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """The synthetic stand-in for the sexual class (see training/demo_data.py): one to four
    large, smooth, softly shaded ellipses in one skin tone, over a photo or plain background."""
    background = photo_crop(rng, width, height) if rng.random() < 0.5 else plain_background(rng, width, height)
    scale = min(1.0, BLOB_CANVAS / max(width, height))
    small_w, small_h = max(8, round(width * scale)), max(8, round(height * scale))
    canvas = np.asarray(background.resize((small_w, small_h), Image.Resampling.BILINEAR), dtype=np.float32)
    cover = np.zeros((small_h, small_w, 1), dtype=np.float32)
    yy, xx = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] + rng.uniform(-10, 10, 3)
    light = rng.uniform(-1, 1, 2)
    for blob in range(int(rng.integers(1, 5))):
        # The first blob is large and central so that skin dominates every image of the class.
        spread = 0.15 if blob == 0 else 0.45
        cx = small_w * (0.5 + rng.uniform(-spread, spread))
        cy = small_h * (0.5 + rng.uniform(-spread, spread))
        extent = (0.3, 0.6) if blob == 0 else (0.12, 0.4)
        ax, ay = small_w * rng.uniform(*extent), small_h * rng.uniform(*extent)
        theta = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / ax
        v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / ay
        r = np.sqrt(u * u + v * v)
        alpha = np.clip((1.0 - r) / rng.uniform(0.05, 0.25), 0.0, 1.0)[..., None]
        dome = np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
        shade = (0.72 + 0.28 * dome + 0.12 * (u * light[0] + v * light[1]))[..., None]
        canvas = canvas * (1.0 - alpha) + tone * shade * rng.uniform(0.92, 1.08) * alpha
        cover = np.maximum(cover, alpha)
    # Scale back up and keep the background's own detail wherever no blob covers it.
    blobs = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    mask = Image.fromarray((cover[..., 0] * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    background.paste(blobs, (0, 0), mask)
    noise = rng.normal(0, 2.0, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(background, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
