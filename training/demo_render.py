"""Drawing primitives of the demo data generators (training/demo_data.py, demo_kinds.py,
benchmark_data.py): photo crops, paper and plain backgrounds, text drawn and recorded, documents
placed on a background (scaled, turned, in perspective, with a shadow), camera and screen
defects, and the skin-tone blob stand-in.

Every function draws only from the generator it is given, so an image depends on nothing but its
own seed. A `Scene` carries that generator for one image together with which set of fonts and
photos it may use (training or held-out, see demo_fonts.py and PHOTO_HELDOUT) and a record of
what was drawn: the fonts and photos used, whether any text was drawn, the entity types of the
personal data drawn and the x-height in pixels of each line at the image's own size."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from training import demo_fonts
from training.demo_content import Line, as_line, is_japanese

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
    "brick",
    "grass",
    "gravel",
    "moon",
    "retina",
    "cell",
    "clock",
)
# The photos only the held-out benchmark images use (by file stem, or skimage name); every
# other photo is a training one. Chosen to cover both kinds of source and several subjects.
PHOTO_HELDOUT = frozenset(
    {
        "Dune",
        "LadyBird",
        "Storm",
        "YellowFlower",
        "Waves",
        "Silk",
        "Ubuntu-Mate-Warm-no-logo",
        "MATE-Stripes-Dark",
        "skimage:coffee",
        "skimage:rocket",
        "skimage:gravel",
        "skimage:retina",
    }
)
PHOTO_MAX_SIDE = 800
OVERLAY_BACKDROP = (46, 84, 120, 255)
# A near-uniform wallpaper is no photo (and would make a blank image).
MIN_PHOTO_STD = 6.0

# Kept for callers that name the two original families directly.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NOTO = Path("/usr/share/fonts/opentype/noto")
LATIN_FONTS = tuple(
    DEJAVU / f for f in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf")
)
CJK_FONTS = tuple(
    NOTO / f
    for f in ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc")
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
MIN_SIDE, MAX_SIDE = 96, 640
# Below this x-height (pixels, at the image's own size) text stops being reliably legible;
# most text is drawn above it, a small share below as the hard cases.
LEGIBLE_X_HEIGHT = 10.0


# ---------------------------------------------------------------------------------------------
# Photos


def photo_split(name: str) -> str:
    return "heldout" if name in PHOTO_HELDOUT else "train"


def _photo_key(path: Path) -> str:
    stem = path.stem
    head, _, tail = stem.rpartition("_")
    # Elephants_3840x2160 is Elephants at another size: the same photo, the same set.
    return head if head and "x" in tail and tail.replace("x", "").isdigit() else stem


@functools.cache
def named_photos(split: str = "train") -> tuple[tuple[str, np.ndarray], ...]:
    """(name, pixels) of the source photos of one set, downscaled, loaded once per process."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(PHOTO_DIR.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".png") or path.stat().st_size > MAX_PHOTO_FILE_BYTES:
            continue
        name = _photo_key(path)
        if photo_split(name) != split or name in found:
            continue
        with Image.open(path) as opened:
            opened.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            img: Image.Image = opened
            if img.mode in ("RGBA", "LA", "P"):
                # Overlay wallpapers are mostly transparent: shown over a desktop colour, not
                # as the white their hidden pixels happen to be.
                base = Image.new("RGBA", img.size, OVERLAY_BACKDROP)
                img = Image.alpha_composite(base, img.convert("RGBA"))
            img = img.convert("RGB")
            img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
            arr = np.asarray(img)
        if arr.std() >= MIN_PHOTO_STD:
            found[name] = arr
    import skimage.data

    for sk in SKIMAGE_PHOTOS:
        name = f"skimage:{sk}"
        if photo_split(name) != split:
            continue
        try:
            arr = getattr(skimage.data, sk)()
        except Exception:
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        small = Image.fromarray(np.ascontiguousarray(arr[..., :3], dtype=np.uint8))
        small.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.BILINEAR)
        found[name] = np.asarray(small)
    if not found:
        raise RuntimeError(f"no {split!r} photos found under {PHOTO_DIR} nor in skimage.data")
    return tuple(found.items())


def photos(split: str = "train") -> tuple[np.ndarray, ...]:
    """Source photos of one set, downscaled, loaded once per process."""
    return tuple(arr for _, arr in named_photos(split))


def _crop(rng: np.random.Generator, src: np.ndarray, width: int, height: int, zoom: tuple[float, float]) -> Image.Image:
    src_h, src_w = src.shape[:2]
    # Crop with the target's aspect ratio, so the crop is rescaled rather than distorted.
    crop_w = min(src_w, max(8, int(src_w * rng.uniform(*zoom))))
    crop_h = min(src_h, max(8, int(crop_w * height / width)))
    crop_w = min(crop_w, max(8, int(crop_h * width / height)))
    x = int(rng.integers(0, src_w - crop_w + 1))
    y = int(rng.integers(0, src_h - crop_h + 1))
    # Box filtering when shrinking: as smooth as bilinear there, at two thirds of the cost.
    resample = Image.Resampling.BOX if crop_w >= width else Image.Resampling.BILINEAR
    img = Image.fromarray(src[y : y + crop_h, x : x + crop_w]).resize((width, height), resample)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def photo_crop(
    rng: np.random.Generator, width: int, height: int, split: str = "train", zoom: tuple[float, float] = (0.35, 1.0)
) -> Image.Image:
    sources = named_photos(split)
    _, src = sources[int(rng.integers(len(sources)))]
    return _crop(rng, src, width, height, zoom)


# ---------------------------------------------------------------------------------------------
# Textures: random fields made once per process from fixed seeds and cropped at random offsets,
# far cheaper than drawing fresh noise for every image.

_FIELD = 704


@functools.cache
def _grain() -> np.ndarray:
    return (np.random.default_rng(0x6A1).standard_normal((_FIELD, _FIELD)) * 24).clip(-127, 127).astype(np.int8)


@functools.cache
def _blotches() -> np.ndarray:
    small = np.random.default_rng(0xB10).standard_normal((12, 12)).astype(np.float32)
    big = Image.fromarray(small, "F").resize((_FIELD, _FIELD), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32)


def _field_crop(rng: np.random.Generator, field_: np.ndarray, width: int, height: int) -> np.ndarray:
    width, height = min(width, _FIELD), min(height, _FIELD)
    x = int(rng.integers(0, _FIELD - width + 1))
    y = int(rng.integers(0, _FIELD - height + 1))
    return field_[y : y + height, x : x + width]


def _tile(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.shape[0] >= height and arr.shape[1] >= width:
        return arr[:height, :width]
    reps = (-(-height // arr.shape[0]), -(-width // arr.shape[1]))
    return np.tile(arr, reps)[:height, :width]


def plain_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    light = rng.random() < 0.7
    base = rng.uniform(190, 255, 3) if light else rng.uniform(0, 90, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None] * rng.uniform(-25, 25, 3)
    # One column of the vertical gradient, stretched sideways: the same pixels, a fraction of the work.
    column = Image.fromarray(np.clip(base + ramp, 0, 255).astype(np.uint8))
    return column.resize((width, height), Image.Resampling.NEAREST)


PAPER_TINTS = {
    "white": ((238, 252), (236, 250), (228, 246)),
    "cream": ((235, 252), (225, 245), (195, 230)),
    "yellow": ((245, 255), (225, 245), (120, 170)),  # sticky note
    "pink": ((245, 255), (190, 215), (200, 225)),
    "blue": ((190, 215), (220, 238), (240, 255)),
    "green": ((200, 225), (235, 250), (190, 215)),
    "kraft": ((190, 215), (160, 185), (115, 140)),
}


@functools.cache
def _paper_grey(grain: int) -> Image.Image:
    """Paper's texture as a grey field around 128: blotches and grain of strength `grain`."""
    arr = 128 + _blotches() * 12 + _grain().astype(np.float32) * (0.1 * grain)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def paper_background(
    rng: np.random.Generator, width: int, height: int, tint: str | None = None, ruled: bool | None = None
) -> Image.Image:
    """Paper: a tint, low-frequency blotches, grain, and ruled or grid lines now and then."""
    tint = tint or str(rng.choice(["white", "white", "cream", "cream", "yellow", "kraft"]))
    base = np.array([rng.uniform(*r) for r in PAPER_TINTS[tint]], np.float32)
    grey = _paper_grey(int(rng.integers(1, 4)))
    x = int(rng.integers(0, max(1, _FIELD - width) + 1))
    y = int(rng.integers(0, max(1, _FIELD - height) + 1))
    crop = (
        grey.crop((x, y, x + width, y + height))
        if width <= _FIELD and height <= _FIELD
        else grey.resize((width, height))
    )
    # The grey field's 0..255 maps linearly onto base - 0.5 * depth .. base + 0.5 * depth.
    depth = float(rng.uniform(0.5, 1.2)) * 40
    lo, hi = np.clip(base - depth / 2 * 128 / 40, 0, 255), np.clip(base + depth / 2 * 127 / 40, 0, 255)
    img = ImageOps.colorize(crop, _rgb3(lo), _rgb3(hi))
    if ruled if ruled is not None else rng.random() < 0.35:
        spacing = int(rng.integers(18, 40))
        colour = (40, 30, 10) if rng.random() < 0.6 else (20, 45, 55)
        line = _rgb3(np.clip(base - np.array(colour), 0, 255))
        draw = ImageDraw.Draw(img)
        for yy in range(spacing, height, spacing):
            draw.line((0, yy, width, yy), fill=line)
        if rng.random() < 0.25:  # graph paper
            for xx in range(spacing, width, spacing):
                draw.line((xx, 0, xx, height), fill=line)
    return img


def _rgb3(values: Sequence[float] | np.ndarray) -> tuple[int, int, int]:
    return (int(values[0]), int(values[1]), int(values[2]))


def text_background(
    rng: np.random.Generator, width: int, height: int, split: str = "train"
) -> tuple[Image.Image, bool]:
    """A plain, paper-like or photo background, and whether it is a photo."""
    kind = rng.random()
    if kind < 0.35:
        return plain_background(rng, width, height), False
    if kind < 0.65:
        return paper_background(rng, width, height), False
    return photo_crop(rng, width, height, split), True


def font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return demo_fonts.face(path, size)


# ---------------------------------------------------------------------------------------------
# The scene: one image's generator and the record of what was drawn on it


@dataclass
class Mark:
    """One line of text drawn: its entity types, x-height in pixels, font and text."""

    entities: tuple[str, ...]
    px: float
    font: str = ""
    text: str = ""


@dataclass
class Scene:
    rng: np.random.Generator
    split: str = "train"
    # Harder settings (smaller text, larger angles, more defects), for held-out benchmark images.
    hard: bool = False
    fonts: list[str] = field(default_factory=list)
    backgrounds: list[str] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def has_text(self) -> bool:
        return bool(self.marks)

    @property
    def entities(self) -> tuple[str, ...]:
        from training.demo_content import ENTITY_TYPES

        found = {e for m in self.marks for e in m.entities}
        return tuple(e for e in ENTITY_TYPES if e in found)

    def text_px(self) -> float:
        """The x-height in pixels of the smallest line with personal data; without any, the
        median of all lines; 0 without text."""
        personal = [m.px for m in self.marks if m.entities]
        if personal:
            return min(personal)
        return float(np.median([m.px for m in self.marks])) if self.marks else 0.0

    def font(self, script: str, styles: Sequence[str] | None = None) -> demo_fonts.FontSpec:
        return demo_fonts.pick(self.rng, self.split, script, styles)

    def photo(self, width: int, height: int, zoom: tuple[float, float] = (0.35, 1.0)) -> Image.Image:
        sources = named_photos(self.split)
        name, src = sources[int(self.rng.integers(len(sources)))]
        if name not in self.backgrounds:
            self.backgrounds.append(name)
        return _crop(self.rng, src, width, height, zoom)

    def x_height(self, small_share: float | None = None) -> float:
        """A random x-height in pixels: mostly legible (12 to 26 px), a small share smaller."""
        share = (0.22 if self.hard else 0.08) if small_share is None else small_share
        if self.rng.random() < share:
            return float(self.rng.uniform(5.0, LEGIBLE_X_HEIGHT))
        # A margin above the floor, since placing a document may shrink it a little.
        return float(np.exp(self.rng.uniform(np.log(LEGIBLE_X_HEIGHT * 1.2), np.log(26.0))))

    def angle(self) -> float:
        """Mostly small turns, some up to 30 degrees (45 in the hard setting)."""
        r = self.rng.random()
        if r < 0.4:
            return 0.0
        if r < 0.6:
            a = self.rng.uniform(0.5, 2.5)
        elif r < (0.8 if self.hard else 0.9):
            a = self.rng.uniform(2.5, 12)
        else:
            a = self.rng.uniform(12, 45 if self.hard else 30)
        return float(a if self.rng.random() < 0.5 else -a)

    def scale_marks(self, start: int, factor: float) -> None:
        for m in self.marks[start:]:
            m.px *= factor


def size_for(spec: demo_fonts.FontSpec, x_height: float, japanese: bool) -> int:
    """The font size giving lowercase (for Japanese: kana) text of `x_height` pixels, in the
    sense of demo_fonts.x_height_ratio."""
    ratio = demo_fonts.x_height_ratio(spec, "あ" if japanese and spec.script == "ja" else "xxxx")
    return demo_fonts.ladder_size(x_height / ratio)


def x_height_of(spec: demo_fonts.FontSpec, size: float, text: str) -> float:
    return size * demo_fonts.x_height_ratio(spec, text)


class Doc:
    """An image being drawn on (a card, a label, a screen, the final canvas) and the text
    marks drawn into it, which count once the doc is placed (with its scale)."""

    def __init__(self, scene: Scene, img: Image.Image):
        self.scene = scene
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.marks: list[Mark] = []

    @property
    def size(self) -> tuple[int, int]:
        return self.img.size

    def face(
        self, spec: demo_fonts.FontSpec, size: int, text: str
    ) -> tuple[demo_fonts.FontSpec, ImageFont.FreeTypeFont]:
        spec = demo_fonts.covering(spec, text)
        return spec, demo_fonts.face(spec.path, demo_fonts.ladder_size(size))

    def text(
        self,
        xy: tuple[float, float],
        line: Line | str,
        spec: demo_fonts.FontSpec,
        size: int,
        fill: Sequence[float],
        anchor: str = "la",
        stroke: int = 0,
        stroke_fill: Sequence[float] = (255, 255, 255),
    ) -> float:
        """Draws one line; returns its width."""
        line = as_line(line)
        if not line.text.strip():
            return 0.0
        spec, face = self.face(spec, size, line.text)
        colour = tuple(int(c) for c in fill)
        if self.img.mode == "RGBA" and len(colour) == 3:
            colour = (*colour, 255)
        outline = tuple(int(c) for c in stroke_fill)
        if self.img.mode == "RGBA" and len(outline) == 3:
            outline = (*outline, 255)
        self.draw.text(xy, line.text, font=face, fill=colour, anchor=anchor, stroke_width=stroke, stroke_fill=outline)
        self.record(spec, line, face.size)
        return text_width(spec, face.size, line.text)

    def record(self, spec: demo_fonts.FontSpec, line: Line, size: float) -> None:
        """Notes `line` as drawn in `spec` at `size` (its x-height is what is recorded)."""
        self.marks.append(Mark(line.entities, float(x_height_of(spec, size, line.text)), spec.name, line.text))

    def absorb(self, other: Doc, scale: float = 1.0) -> None:
        """Takes over the marks of `other`, drawn into this doc at `scale`."""
        self.marks.extend(Mark(m.entities, m.px * scale, m.font, m.text) for m in other.marks)
        other.marks = []

    def paste(self, other: Doc, xy: tuple[int, int], scale: float = 1.0) -> None:
        """Pastes `other` (scaled by `scale`) into this doc at `xy`, with its marks."""
        layer = other.img if other.img.mode == "RGBA" else other.img.convert("RGBA")
        if abs(scale - 1.0) > 0.01:
            layer = layer.resize(
                (max(1, round(layer.width * scale)), max(1, round(layer.height * scale))), Image.Resampling.BILINEAR
            )
        if self.img.mode == "RGBA":
            self.img.alpha_composite(layer, (int(xy[0]), int(xy[1])))
        else:
            self.img.paste(layer, (int(xy[0]), int(xy[1])), layer)
        self.absorb(other, scale)

    def commit(self, scale: float = 1.0) -> None:
        """The doc's text now counts as drawn on the image (at `scale`)."""
        for m in self.marks:
            m.px = float(m.px * scale)
            if m.font not in self.scene.fonts:
                self.scene.fonts.append(m.font)
        self.scene.marks.extend(self.marks)
        self.marks = []

    def final(self) -> Image.Image:
        """The doc as the finished image (RGB), its text committed."""
        self.commit()
        return self.img if self.img.mode == "RGB" else self.img.convert("RGB")


@functools.lru_cache(maxsize=8192)
def text_width(spec: demo_fonts.FontSpec, size: int, text: str) -> float:
    """The advance width of `text` at `size` in `spec` (or the face that replaces it)."""
    spec = demo_fonts.covering(spec, text)
    return demo_fonts.face(spec.path, demo_fonts.ladder_size(size)).getlength(text)


# Where a Japanese address may break: after the prefecture, city, ward, town or village.
_JA_BREAKS = "都道府県市区町村"


_NUMBER_CHARS = frozenset("0123456789()+-.#/０１２３４５６７８９（）－〒")


def _numeric(word: str) -> bool:
    """A group of a phone number or a postal code: digits and their punctuation only."""
    return bool(word) and any(ch.isdigit() for ch in word) and all(ch in _NUMBER_CHARS for ch in word)


def wrap(spec: demo_fonts.FontSpec, size: int, line: Line | str, max_width: float) -> list[Line]:
    """`line` broken into lines no wider than max_width, each keeping the entity types of the
    whole. Breaks at spaces; ordinary Japanese text anywhere; personal data never inside a
    value (a Japanese address after 都, 市, 区 and the like), so a line may stay too wide."""
    line = as_line(line)
    if max_width <= 0 or text_width(spec, size, line.text) <= max_width:
        return [line]
    text = line.text
    if " " in text.strip():
        words = text.split(" ")
        if line.entities:
            # A phone number's groups stay on one line, and so do a short label or a state code
            # and the number after it: words with digits stick to their neighbour.
            glued = [words[0]]
            for word in words[1:]:
                prev = glued[-1].rsplit(" ", 1)[-1]
                if _numeric(word) and (_numeric(prev) or len(prev) <= 3 or prev.endswith(":")):
                    glued[-1] += " " + word
                else:
                    glued.append(word)
            words = glued
        pieces = [words[0]]
        for word in words[1:]:
            if text_width(spec, size, pieces[-1] + " " + word) <= max_width:
                pieces[-1] += " " + word
            else:
                pieces.append(word)
        out: list[Line] = []
        for piece in pieces:
            out.extend(
                wrap(spec, size, Line(piece, line.entities), max_width)
                if " " not in piece and is_japanese(piece)
                else [Line(piece, line.entities)]
            )
        return out
    if not is_japanese(text):
        return [line]
    if line.entities:
        cuts = [i + 1 for i, ch in enumerate(text[:-1]) if ch in _JA_BREAKS] + [len(text)]
        kept: list[str] = []
        begin = last = 0
        for cut in cuts:
            if text_width(spec, size, text[begin:cut]) > max_width and last > begin:
                kept.append(text[begin:last])
                begin = last
            last = cut
        kept.append(text[begin:])
        return [Line(p, line.entities) for p in kept if p]
    per = max(1, int(len(text) * max_width / max(1.0, text_width(spec, size, text))))
    return [Line(text[i : i + per], line.entities) for i in range(0, len(text), per)]


def ink_for(background_luma: float, rng: np.random.Generator) -> tuple[float, ...]:
    """A random dark ink on a light background, a light one on a dark background."""
    return tuple(float(v) for v in (rng.uniform(0, 80, 3) if background_luma > 120 else rng.uniform(200, 255, 3)))


def luma(img: Image.Image, box: tuple[int, int, int, int] | None = None) -> float:
    region = img.crop(box) if box else img
    small = region.convert("L").resize((16, 16), Image.Resampling.NEAREST)
    return float(np.asarray(small).mean())


def _block_layout(
    lines: Sequence[Line | str],
    spec: demo_fonts.FontSpec,
    size: int,
    gap: float,
    max_width: float,
    heading: tuple[demo_fonts.FontSpec, float] | None,
    stroke: int = 0,
) -> tuple[list[tuple[Line, demo_fonts.FontSpec, int]], list[float], list[int], int, int, int]:
    rows: list[tuple[Line, demo_fonts.FontSpec, int]] = []
    for i, item in enumerate(lines):
        face_spec, face_size = (heading[0], int(size * heading[1])) if heading and i == 0 else (spec, size)
        rows.extend((piece, face_spec, face_size) for piece in wrap(face_spec, face_size, item, max_width))
    widths = [text_width(s, z, ln.text) for ln, s, z in rows]
    pad = max(2, size // 3)
    width = int(max(widths, default=1)) + 2 * pad + 2 * stroke
    heights = [int(z * gap) for _, _, z in rows]
    return rows, widths, heights, pad, width, sum(heights) + 2 * pad


def measure_block(
    lines: Sequence[Line | str],
    spec: demo_fonts.FontSpec,
    size: int,
    gap: float = LINE_GAP,
    max_width: float = 0,
    heading: tuple[demo_fonts.FontSpec, float] | None = None,
) -> tuple[int, int]:
    """The size text_block would give these lines, without drawing them."""
    *_, width, height = _block_layout(lines, spec, size, gap, max_width, heading)
    return width, height


def text_block(
    scene: Scene,
    lines: Sequence[Line | str],
    spec: demo_fonts.FontSpec,
    size: int,
    fill: Sequence[float],
    gap: float = LINE_GAP,
    align: str = "left",
    max_width: float = 0,
    plate: Sequence[int] | None = None,
    stroke: int = 0,
    stroke_fill: Sequence[float] = (255, 255, 255),
    heading: tuple[demo_fonts.FontSpec, float] | None = None,
) -> Doc:
    """`lines` on a transparent layer just large enough for them (optionally on a plate);
    the first line larger and in another face with `heading` = (face, scale)."""
    rows, widths, heights, pad, width, height = _block_layout(lines, spec, size, gap, max_width, heading, stroke)
    doc = Doc(scene, Image.new("RGBA", (max(1, width), max(1, height)), (0, 0, 0, 0)))
    if plate is not None:
        doc.draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=pad, fill=tuple(plate))
    y = pad
    for (line, s, z), w, h in zip(rows, widths, heights, strict=True):
        x = pad + stroke + {"left": 0.0, "center": (width - 2 * pad - w) / 2, "right": width - 2 * pad - w}[align]
        doc.text((x, y), line, s, z, fill, stroke=stroke, stroke_fill=stroke_fill)
        y += h
    return doc


# ---------------------------------------------------------------------------------------------
# Placing a document on a background


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL's PERSPECTIVE coefficients mapping output points `dst` to input points `src`."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(rows, dtype=np.float64), src.reshape(8).astype(np.float64))
    return tuple(float(c) for c in coeffs)


def warp(
    rng: np.random.Generator, img: Image.Image, scale: float, angle: float, strength: float
) -> tuple[Image.Image, float]:
    """`img` (RGBA) scaled, its corners moved by up to `strength` of its size (as if
    photographed a little off-axis) and turned by `angle` degrees, in one resampling; returns
    the result and the scale applied."""
    w, h = img.size
    src = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float64)
    dst = src * scale
    if strength > 0:
        dst = dst + rng.uniform(-strength, strength, (4, 2)) * (w * scale, h * scale)
    rad = np.deg2rad(angle)
    # PIL's rotate turns counter-clockwise on screen, y pointing down.
    turn = np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]])
    dst = dst @ turn.T
    dst -= dst.min(axis=0)
    out_w, out_h = (max(1, int(np.ceil(v))) for v in dst.max(axis=0))
    if strength == 0 and abs(angle) <= 2.5:
        # A slight turn: nearest-neighbour sampling shows no steps at this angle and costs a
        # tenth of bilinear.
        resample = Image.Resampling.NEAREST if abs(scale - 1.0) <= 0.03 else Image.Resampling.BILINEAR
    else:
        resample = Image.Resampling.BILINEAR
    # Premultiplied, so that the transparent surround does not bleed dark into the edges.
    out = img.convert("RGBa").transform(
        (out_w, out_h), Image.Transform.PERSPECTIVE, _perspective_coeffs(src, dst), resample
    )
    return out.convert("RGBA"), scale


def perspective(rng: np.random.Generator, img: Image.Image, strength: float) -> Image.Image:
    """`img` (RGBA) as if photographed a little off-axis: corners moved by up to `strength`
    of its size."""
    return warp(rng, img, 1.0, 0.0, strength)[0]


def place(
    scene: Scene,
    canvas: Image.Image,
    doc: Doc,
    fill: tuple[float, float] = (0.6, 0.95),
    angle: float | None = None,
    perspective_share: float = 0.2,
    shadow: bool = False,
    at: tuple[int, int] | None = None,
) -> tuple[int, int, int, int]:
    """Pastes `doc` onto `canvas`: scaled to cover `fill` of it at most (never enlarged by
    more than 1.5), turned by `angle` (scene.angle() when None), now and then in perspective.
    Commits the doc's marks with the scale; returns the box it covers."""
    rng = scene.rng
    layer = doc.img if doc.img.mode == "RGBA" else doc.img.convert("RGBA")
    cw, ch = canvas.size
    target = rng.uniform(*fill)
    angle = scene.angle() if angle is None else angle
    rad = np.deg2rad(abs(angle))
    turned_w = layer.width * np.cos(rad) + layer.height * np.sin(rad)
    turned_h = layer.width * np.sin(rad) + layer.height * np.cos(rad)
    scale = min(1.5, target * cw / turned_w, target * ch / turned_h)
    if abs(scale - 1.0) <= 0.03:
        scale = 1.0
    strength = float(rng.uniform(0.02, 0.12 if scene.hard else 0.08)) if rng.random() < perspective_share else 0.0
    if strength > 0 or abs(angle) > 0.3:
        layer, scale = warp(rng, layer, scale, angle, strength)
    elif scale != 1.0:
        layer = layer.resize(
            (max(1, round(layer.width * scale)), max(1, round(layer.height * scale))), Image.Resampling.BILINEAR
        )
    fit = min(1.0, cw / layer.width, ch / layer.height)
    if fit < 1.0:
        layer = layer.resize(
            (max(1, int(layer.width * fit)), max(1, int(layer.height * fit))), Image.Resampling.BILINEAR
        )
        scale *= fit
    if at is None:
        x = int(rng.integers(0, cw - layer.width + 1))
        y = int(rng.integers(0, ch - layer.height + 1))
    else:
        x, y = min(max(0, at[0]), cw - layer.width), min(max(0, at[1]), ch - layer.height)
    if shadow:
        offset = max(2, int(min(layer.size) * 0.02))
        if x + offset < cw and y + offset < ch:
            alpha = layer.getchannel("A").point(lambda a: a * 0.35)
            canvas.paste((0, 0, 0), (x + offset, y + offset), alpha)
    canvas.paste(layer, (x, y), layer)
    doc.commit(scale)
    return x, y, x + layer.width, y + layer.height


def frame(
    rng: np.random.Generator, doc_w: float, doc_h: float, fill: float, max_aspect: float = 1.5
) -> tuple[int, int, float]:
    """(width, height, fill) of a canvas that a document of doc_w x doc_h fills to about `fill`
    (MIN_SIDE..MAX_SIDE, aspect at most max_aspect). Where MAX_SIDE would make the document
    shrink, the document fills more of the canvas instead, up to 0.97."""
    aspect = float(np.clip(doc_w / doc_h * rng.uniform(0.85, 1.15), 1 / max_aspect, max_aspect))
    # The canvas must hold the document in both directions at this aspect.
    side = max(doc_w / aspect, doc_h)
    fill = float(max(fill, min(0.97, max(side * aspect, side) / MAX_SIDE)))
    w, h = side * aspect / fill, side / fill
    shrink = min(1.0, MAX_SIDE / max(w, h))
    return int(np.clip(w * shrink, MIN_SIDE, MAX_SIDE)), int(np.clip(h * shrink, MIN_SIDE, MAX_SIDE)), fill


def canvas_around(
    rng: np.random.Generator,
    doc_w: float,
    doc_h: float,
    fill: tuple[float, float] = (0.55, 0.9),
    max_aspect: float = 1.5,
) -> tuple[int, int]:
    """A canvas size that a document of doc_w x doc_h fills to about `fill` (see frame)."""
    w, h, _ = frame(rng, doc_w, doc_h, float(rng.uniform(*fill)), max_aspect)
    return w, h


def random_size(
    rng: np.random.Generator, lo: int = MIN_SIDE, hi: int = MAX_SIDE, max_aspect: float = 1.5
) -> tuple[int, int]:
    long_side = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    aspect = np.exp(rng.uniform(np.log(1 / max_aspect), np.log(max_aspect)))
    width, height = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    return int(np.clip(width, MIN_SIDE, MAX_SIDE)), int(np.clip(height, MIN_SIDE, MAX_SIDE))


def desk_background(scene: Scene, width: int, height: int) -> Image.Image:
    """What a card or a label lies on: a photo (most often), plain colour or paper."""
    r = scene.rng.random()
    if r < 0.55:
        return scene.photo(width, height)
    if r < 0.8:
        return plain_background(scene.rng, width, height)
    return paper_background(
        scene.rng, width, height, tint=str(scene.rng.choice(["white", "kraft", "cream"])), ruled=False
    )


# ---------------------------------------------------------------------------------------------
# Defects of cameras, screens and compression


def defects(scene: Scene, img: Image.Image, photographed: bool) -> Image.Image:
    """Blur, noise, colour cast, low-quality JPEG: more of them on photographed documents than
    on screenshots. Scaling the image scales the recorded text sizes."""
    rng = scene.rng
    hard = 1.6 if scene.hard else 1.0
    w, h = img.size
    if photographed and rng.random() < 0.3 * hard:
        lut = _colour_lut(rng)
        img = img.point(lut)
    if rng.random() < (0.2 if photographed else 0.06) * hard:
        f = float(rng.uniform(0.45 if scene.hard else 0.55, 0.85))
        small = img.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.BOX)
        img = small.resize((w, h), Image.Resampling.BILINEAR)
    if photographed and rng.random() < 0.3 * hard:
        sigma = float(rng.uniform(0.1, 0.35))
        grain = _tile(_field_crop(rng, _grain(), w, h), w, h)
        arr = np.asarray(img, dtype=np.int16) + (grain * sigma).astype(np.int16)[..., None]
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.08 * hard:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(18, 45)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def _colour_lut(rng: np.random.Generator) -> list[int]:
    gain = rng.uniform(0.8, 1.12, 3)
    offset = rng.uniform(-18, 18, 3)
    gamma = rng.uniform(0.8, 1.25)
    x = np.arange(256, dtype=np.float32) / 255.0
    lut = []
    for c in range(3):
        lut.extend(np.clip(255 * (x**gamma) * gain[c] + offset[c], 0, 255).astype(np.uint8).tolist())
    return lut


def downscale(scene: Scene, img: Image.Image, factor: float) -> Image.Image:
    """The image shrunk by `factor` (a hard small case), its text sizes with it."""
    w, h = img.size
    nw, nh = max(MIN_SIDE, int(w * factor)), max(MIN_SIDE, int(h * factor))
    scene.scale_marks(0, min(nw / w, nh / h))
    return img.resize((nw, nh), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------------------------------------
# Small drawings: avatars, logos, barcodes, status bars


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


def paste_avatar(rng: np.random.Generator, img: Image.Image, xy: tuple[int, int], diameter: int) -> None:
    """A generic avatar: a head-and-shoulders silhouette in colours far from skin tones."""
    diameter = max(4, diameter)
    img.paste(_avatar(rng, diameter), xy, _avatar_mask(diameter))


def logo(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], colour: Sequence[int]
) -> None:
    """An abstract company mark: circles, squares, triangles or bars."""
    x0, y0, x1, y1 = box
    s = min(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    c = tuple(int(v) for v in colour)
    second = tuple(int(v) for v in np.clip(np.array(colour) + rng.uniform(-90, 90, 3), 0, 255))
    kind = int(rng.integers(5))
    if kind == 0:
        draw.ellipse((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), fill=c)
        draw.ellipse((cx - s / 5, cy - s / 5, cx + s / 5, cy + s / 5), fill=second)
    elif kind == 1:
        draw.rectangle((cx - s / 2, cy - s / 2, cx + s / 6, cy + s / 6), fill=c)
        draw.rectangle((cx - s / 6, cy - s / 6, cx + s / 2, cy + s / 2), fill=second)
    elif kind == 2:
        draw.polygon([(cx, cy - s / 2), (cx + s / 2, cy + s / 2), (cx - s / 2, cy + s / 2)], fill=c)
    elif kind == 3:
        for i in range(3):
            bx = cx - s / 2 + i * s / 3
            draw.rectangle((bx, cy + s / 2 - s * (i + 1) / 3, bx + s / 4, cy + s / 2), fill=c if i != 1 else second)
    else:
        draw.ellipse((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), outline=c, width=max(2, int(s / 8)))
        draw.line((cx - s / 3, cy + s / 3, cx + s / 3, cy - s / 3), fill=second, width=max(2, int(s / 8)))


def barcode(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    ink: Sequence[int] = (0, 0, 0),
) -> None:
    x0, y0, x1, y1 = box
    x = x0
    colour = tuple(int(v) for v in ink)
    unit = max(1.0, (x1 - x0) / 95)
    while x < x1 - unit:
        w = unit * int(rng.integers(1, 4))
        if rng.random() < 0.55:
            draw.rectangle((x, y0, min(x1, x + w - 1), y1), fill=colour)
        x += w


def qr_like(rng: np.random.Generator, img: Image.Image, box: tuple[int, int, int, int]) -> None:
    """A QR-code-looking square of random modules (it encodes nothing)."""
    x0, y0, x1, y1 = box
    n = 21
    cells = rng.random((n, n)) < 0.5
    for cx, cy in ((0, 0), (n - 7, 0), (0, n - 7)):
        cells[cy : cy + 7, cx : cx + 7] = False
        cells[cy, cx : cx + 7] = cells[cy + 6, cx : cx + 7] = True
        cells[cy : cy + 7, cx] = cells[cy : cy + 7, cx + 6] = True
        cells[cy + 2 : cy + 5, cx + 2 : cx + 5] = True
    side = min(x1 - x0, y1 - y0)
    tile = Image.fromarray(np.where(cells, 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    img.paste(tile.convert(img.mode), (x0, y0))


def status_bar(scene: Scene, doc: Doc, height: int, dark: bool, spec: demo_fonts.FontSpec) -> None:
    """A phone's status bar: the time, signal bars and a battery."""
    w = doc.size[0]
    ink = (235, 235, 235) if dark else (20, 20, 20)
    size = max(8, int(height * 0.62))
    clock = f"{int(scene.rng.integers(0, 24))}:{int(scene.rng.integers(0, 60)):02d}"
    doc.text((height * 0.6, height / 2), clock, spec, size, ink, anchor="lm")
    bx = w - height * 1.6
    doc.draw.rectangle((bx, height * 0.3, bx + height * 1.0, height * 0.7), outline=ink, width=1)
    doc.draw.rectangle(
        (bx + 2, height * 0.3 + 2, bx + 2 + (height - 4) * scene.rng.uniform(0.2, 1.0), height * 0.7 - 2), fill=ink
    )
    for i in range(4):
        x = bx - height * (1.4 - i * 0.28)
        doc.draw.rectangle((x, height * (0.7 - 0.1 * (i + 1)), x + height * 0.16, height * 0.7), fill=ink)


# ---------------------------------------------------------------------------------------------
# The original helpers, kept for examples/README.md and older callers: they draw with the
# training fonts and record nothing.


def _legacy_scene(rng: np.random.Generator) -> Scene:
    return Scene(rng, "train")


def draw_text(rng: np.random.Generator, img: Image.Image, lines: list[str], lang: str, on_photo: bool) -> None:
    """Draws `lines` onto `img` in place, filling most of it."""
    scene = _legacy_scene(rng)
    fill_text(scene, img, [Line(t) for t in lines], lang == "ja", on_photo)


def fill_text(
    scene: Scene,
    img: Image.Image,
    lines: Sequence[Line],
    japanese: bool,
    on_photo: bool,
    box: tuple[float, float] = (0.7, 0.95),
) -> None:
    """`lines` in one face filling most of `img`, on a plate now and then (more often over a
    photo), turned by up to MAX_ROTATION_DEGREES."""
    rng = scene.rng
    width, height = img.size
    spec = scene.font("ja" if japanese else "latin")
    dark_text = luma(img) > 110
    plate = rng.random() < (0.6 if on_photo else 0.15)
    box_w, box_h = width * rng.uniform(*box), height * rng.uniform(0.5, 0.9)
    ref = max(text_width(spec, 100, ln.text) for ln in lines) / 100
    size = int(np.clip(min(box_w / max(ref, 0.1), box_h / (LINE_GAP * len(lines))), 9, 160))
    alpha = int(rng.integers(150, 230))
    plate_fill = ((255, 255, 255, alpha) if dark_text else (0, 0, 0, alpha)) if plate else None
    ink = tuple(rng.uniform(0, 80, 3) if dark_text else rng.uniform(190, 255, 3))
    stroke = int(size // 12) if rng.random() < 0.3 else 0
    doc = text_block(
        scene,
        lines,
        spec,
        size,
        ink,
        align="center" if rng.random() < 0.5 else "left",
        plate=plate_fill,
        stroke=stroke,
        stroke_fill=(255, 255, 255) if dark_text else (0, 0, 0),
    )
    angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    place(scene, img, doc, fill=(0.97, 1.0), angle=angle, perspective_share=0.0)


def draw_contact_card(rng: np.random.Generator, img: Image.Image, lines: list[str], lang: str) -> None:
    """Draws `lines` onto `img` in place as a contact or profile card: a rounded panel with a
    generic avatar beside or above the text."""
    contact_card(_legacy_scene(rng), img, [Line(t) for t in lines], lang == "ja")


def contact_card(
    scene: Scene, img: Image.Image, lines: Sequence[Line], japanese: bool, angle: float | None = None
) -> None:
    """A contact or profile card (rounded panel, generic avatar beside or above the text), the
    way personal data often appears in screenshots."""
    rng = scene.rng
    width, height = img.size
    card_w = int(width * rng.uniform(0.75, 0.95))
    card_h = int(min(height * rng.uniform(0.5, 0.9), card_w * rng.uniform(0.55, 1.1)))
    dark_mode = rng.random() < 0.3
    panel = rng.uniform(25, 60, 3) if dark_mode else rng.uniform(232, 255, 3)
    doc = Doc(scene, Image.new("RGBA", (card_w, card_h), (0, 0, 0, 0)))
    border = tuple(int(c) for c in (panel + (40 if dark_mode else -40)))
    doc.draw.rounded_rectangle(
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
    paste_avatar(rng, doc.img, (ax, ay), diameter)
    box_w, box_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
    if box_w > 8 and box_h > 8:
        spec = scene.font("ja" if japanese else "latin")
        ref = max(text_width(spec, 100, ln.text) for ln in lines) / 100
        size = int(np.clip(min(box_w * 0.95 / max(ref, 0.1), box_h * 0.9 / (LINE_GAP * len(lines))), 8, 160))
        ink = tuple(rng.uniform(200, 255, 3) if dark_mode else rng.uniform(0, 80, 3))
        text = text_block(scene, lines, spec, size, ink)
        fit = min(1.0, box_w / text.img.width, box_h / text.img.height)
        layer = text.img
        if fit < 1.0:
            layer = layer.resize(
                (max(1, int(layer.width * fit)), max(1, int(layer.height * fit))), Image.Resampling.BILINEAR
            )
        tx = text_box[0] + (box_w - layer.width) // 2 if not beside else text_box[0]
        doc.img.alpha_composite(layer, (int(tx), int(text_box[1] + (box_h - layer.height) // 2)))
        doc.absorb(text, fit)
    if angle is None:
        angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    place(scene, img, doc, fill=(0.97, 1.0), angle=angle, perspective_share=0.0)


# ---------------------------------------------------------------------------------------------
# The sexual stand-in


def skin_blobs(
    rng: np.random.Generator,
    width: int,
    height: int,
    split: str = "train",
    scene: Scene | None = None,
    on_photo: bool | None = None,
) -> Image.Image:
    """The synthetic stand-in for the sexual class (see training/demo_data.py): one to four
    large, smooth, softly shaded ellipses in one skin tone, over a photo or plain background
    (drawn at random unless `on_photo` says which)."""
    if on_photo if on_photo is not None else rng.random() < 0.5:
        background = scene.photo(width, height) if scene is not None else photo_crop(rng, width, height, split)
    else:
        background = plain_background(rng, width, height)
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
    # Sensor noise of about 2 levels, cut from the cached grain field: drawing fresh normal
    # noise for every pixel cost more than the rest of the image.
    noise = np.stack([_tile(_field_crop(rng, _grain(), width, height), width, height) for _ in range(3)], axis=-1)
    arr = np.asarray(background, dtype=np.int16) + ((noise.astype(np.int16) + 6) // 12)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
