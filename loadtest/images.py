"""The image mix the load generator sends, generated once and cached on disk.

Kinds (file name prefixes under the cache directory):

- ``photo``: 1024x768 JPEG, ~100-300 KB, the bulk of real traffic;
- ``large``: 3000x2000 high-quality JPEG, up to ~3 MB, what phones upload unresized;
- ``screenshot``: 1280x800 PNG, text and flat colours;
- ``bad``: payloads every image must survive as a per-image error: a truncated JPEG, an HTML
  page, and a PNG whose header claims 30000x30000 pixels.

Photos are crops and rescales of the Debian ``mate-backgrounds`` photos where that package is
installed (``make system-deps`` installs it) and smooth synthetic noise otherwise; either way a
given seed and source set always give the same bytes. Sensor-like grain is added because JPEG
size, and so transfer and decode cost, depends on it: the wallpapers alone are soft, defocused
shots that compress to a fraction of what a phone photo weighs."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

DEFAULT_DIR = Path("var/loadtest-images")
BACKGROUNDS = Path("/usr/share/backgrounds/mate")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
KINDS = ("photo", "large", "screenshot", "bad")
# Bumped whenever generation changes, so a stale cache is rebuilt instead of silently reused.
GENERATOR_VERSION = 1

PHOTO_SIZE = (1024, 768)
LARGE_SIZE = (3000, 2000)
SCREENSHOT_SIZE = (1280, 800)
LARGE_MAX_BYTES = 3 * 1024 * 1024

CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".html": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class ImageFile:
    name: str  # file name under the cache directory, also the image host's URL path
    kind: str
    size: int  # bytes
    sha256: str
    # The per-image status the service should answer with: IMAGE_OK for good images.
    expected_status: str = "IMAGE_OK"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(Path(self.name).suffix, "application/octet-stream")


class ImageSet:
    """The generated files of one cache directory, with their bytes loaded lazily and kept."""

    def __init__(self, root: Path, files: list[ImageFile]) -> None:
        self.root = Path(root)
        self.files = list(files)
        self._data: dict[str, bytes] = {}

    def of_kind(self, kind: str) -> list[ImageFile]:
        if kind not in KINDS:
            raise ValueError(f"unknown image kind {kind!r}; one of {', '.join(KINDS)}")
        return [f for f in self.files if f.kind == kind]

    def data(self, name: str) -> bytes:
        if name not in self._data:
            self._data[name] = (self.root / name).read_bytes()
        return self._data[name]

    def bytes_of(self, kind: str) -> list[bytes]:
        return [self.data(f.name) for f in self.of_kind(kind)]

    def get(self, name: str) -> ImageFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for kind in KINDS:
            sizes = [f.size for f in self.of_kind(kind)]
            if sizes:
                out[kind] = {
                    "count": len(sizes),
                    "min_bytes": min(sizes),
                    "max_bytes": max(sizes),
                    "mean_bytes": sum(sizes) // len(sizes),
                }
        return out


def ensure_images(
    root: Path | str = DEFAULT_DIR,
    *,
    photos: int = 24,
    large: int = 4,
    screenshots: int = 8,
    seed: int = 0,
    source: str = "auto",
) -> ImageSet:
    """Generates the mix under `root` unless a manifest there already records the same
    parameters, and returns it. source: "auto" (wallpaper photos when installed, else
    synthetic), "backgrounds" or "synthetic"."""
    root = Path(root)
    sources = _photo_sources(source)
    params = {
        "version": GENERATOR_VERSION,
        "photos": photos,
        "large": large,
        "screenshots": screenshots,
        "seed": seed,
        "sources": [str(p) for p in sources],
    }
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("params") == params:
                files = [ImageFile(**entry) for entry in manifest["files"]]
                if all((root / f.name).is_file() and (root / f.name).stat().st_size == f.size for f in files):
                    return ImageSet(root, files)
        except (ValueError, TypeError, KeyError):
            pass  # unreadable or from another version: regenerate
    root.mkdir(parents=True, exist_ok=True)
    files: list[ImageFile] = []

    def keep(name: str, kind: str, data: bytes, expected: str = "IMAGE_OK") -> None:
        # Written to a temporary name first so that an interrupted run never leaves a file
        # that a later manifest check would take for complete.
        tmp = root / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(root / name)
        files.append(ImageFile(name, kind, len(data), hashlib.sha256(data).hexdigest(), expected))

    for i in range(photos):
        rng = random.Random(f"{seed}:photo:{i}")
        image = _photo(rng, PHOTO_SIZE, sources)
        keep(f"photo-{i:03d}.jpg", "photo", _jpeg(image, rng.randint(82, 92)))
    for i in range(large):
        rng = random.Random(f"{seed}:large:{i}")
        image = _photo(rng, LARGE_SIZE, sources)
        keep(f"large-{i:03d}.jpg", "large", _jpeg_under(image, rng.randint(92, 95), LARGE_MAX_BYTES))
    for i in range(screenshots):
        rng = random.Random(f"{seed}:screenshot:{i}")
        thumb = _photo(rng, (320, 240), sources)
        keep(f"screenshot-{i:03d}.png", "screenshot", _png(_screenshot(rng, SCREENSHOT_SIZE, thumb)))
    for name, data, expected in _bad_payloads(random.Random(f"{seed}:bad"), sources):
        keep(name, "bad", data, expected)

    manifest_path.write_text(json.dumps({"params": params, "files": [vars(f) for f in files]}, indent=1))
    return ImageSet(root, files)


# --- photos -----------------------------------------------------------------------------------


def _photo_sources(source: str) -> list[Path]:
    if source not in ("auto", "backgrounds", "synthetic"):
        raise ValueError(f"unknown photo source {source!r}")
    if source == "synthetic":
        return []
    found = sorted(p for p in BACKGROUNDS.glob("**/*.jpg") if p.is_file())
    if source == "backgrounds" and not found:
        raise FileNotFoundError(f"no JPEG photos under {BACKGROUNDS} (Debian package mate-backgrounds)")
    return found


def _photo(rng: random.Random, size: tuple[int, int], sources: list[Path]) -> Image.Image:
    image = _crop_of(rng, rng.choice(sources), size) if sources else _synthetic(rng, size)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.3))
    return _add_grain(image, rng.uniform(3.0, 6.0), rng.getrandbits(32))


def _crop_of(rng: random.Random, path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as src:
        src = src.convert("RGB")
        aspect = size[0] / size[1]
        # Crop with the target's aspect ratio, somewhere between a detail and the whole frame.
        max_w = min(src.width, int(src.height * aspect))
        crop_w = int(max_w * rng.uniform(0.45, 1.0))
        crop_h = int(crop_w / aspect)
        left = rng.randint(0, src.width - crop_w)
        top = rng.randint(0, src.height - crop_h)
        image = src.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _synthetic(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    nrng = np.random.default_rng(rng.getrandbits(64))
    # Octaves of upsampled noise give smooth, cloud-like structure at several scales.
    canvas = np.zeros((height, width, 3), np.float32)
    for octave, weight in ((4, 0.5), (12, 0.3), (40, 0.15), (120, 0.05)):
        cells = nrng.random((max(2, octave * height // width), octave, 3), dtype=np.float32)
        layer = Image.fromarray((cells * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
        canvas += weight * np.asarray(layer, np.float32)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky, ground = nrng.uniform(60, 230, 3), nrng.uniform(20, 160, 3)
    canvas = 0.55 * canvas + 0.45 * (sky * (1 - ys) + ground * ys)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 8)):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randint(width // 30, width // 6)
        fill = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            points = [(x + rng.randint(-r, r), y + rng.randint(-r, r)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=fill)
    # Shapes in a photo have soft edges; hard ones would compress like a screenshot.
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))


def _add_grain(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    arr = np.asarray(image, np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, (*arr.shape[:2], 1)).astype(np.float32)
    # Mostly luminance grain, like a camera sensor, with a little colour noise.
    colour = np.random.default_rng(seed + 1).normal(0.0, sigma / 3, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + noise + colour, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _jpeg_under(image: Image.Image, quality: int, limit: int) -> bytes:
    data = _jpeg(image, quality)
    while len(data) > limit and quality > 60:
        quality -= 3
        data = _jpeg(image, quality)
    return data


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


# --- screenshots ------------------------------------------------------------------------------

_WORDS = (
    "account",
    "settings",
    "profile",
    "message",
    "notification",
    "privacy",
    "share",
    "photo",
    "comment",
    "reply",
    "follow",
    "followers",
    "friends",
    "group",
    "event",
    "today",
    "yesterday",
    "online",
    "offline",
    "status",
    "update",
    "download",
    "upload",
    "search",
    "results",
    "page",
    "next",
    "previous",
    "home",
    "explore",
    "library",
    "saved",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "for",
    "on",
    "with",
    "your",
    "you",
    "we",
    "our",
    "new",
    "more",
    "all",
    "see",
    "view",
    "edit",
    "delete",
)


def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[:1].upper() + text[1:]


def _screenshot(rng: random.Random, size: tuple[int, int], thumb: Image.Image) -> Image.Image:
    width, height = size
    dark = rng.random() < 0.3
    bg, fg, muted = (
        ((30, 32, 36), (230, 230, 230), (140, 145, 150)) if dark else ((248, 249, 251), (25, 28, 32), (110, 115, 120))
    )
    accent = rng.choice([(29, 155, 240), (88, 101, 242), (37, 211, 102), (255, 69, 0), (225, 48, 108)])
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    body, small, bold = load_font(15), load_font(13), load_font(17, bold=True)

    # Title bar, left navigation, content column, right panel: the layout of most web apps.
    draw.rectangle((0, 0, width, 56), fill=accent)
    draw.text((24, 16), _sentence(rng, 2), font=bold, fill=(255, 255, 255))
    draw.rounded_rectangle((width // 2 - 220, 12, width // 2 + 220, 44), radius=16, fill=(255, 255, 255))
    draw.text((width // 2 - 200, 19), "Search", font=body, fill=(150, 150, 150))
    sidebar = 240
    draw.rectangle((0, 56, sidebar, height), fill=tuple(max(0, c - 10) for c in bg))
    for row in range(12):
        y = 80 + row * 40
        if row == 2:
            draw.rectangle((0, y - 8, sidebar, y + 28), fill=tuple(min(255, c + 20) for c in accent))
        draw.ellipse((20, y, 40, y + 20), fill=accent)
        draw.text((52, y + 1), _sentence(rng, rng.randint(1, 2)), font=body, fill=fg)
    panel = width - 300
    x0, y = sidebar + 24, 80
    while y < height - 120:
        draw.ellipse((x0, y, x0 + 44, y + 44), fill=tuple(rng.randrange(256) for _ in range(3)))
        draw.text((x0 + 56, y + 2), _sentence(rng, 2), font=bold, fill=fg)
        draw.text((x0 + 56, y + 24), f"{rng.randint(1, 59)} min", font=small, fill=muted)
        y += 56
        for _ in range(rng.randint(1, 3)):
            draw.text((x0, y), _sentence(rng, rng.randint(6, 11)), font=body, fill=fg)
            y += 22
        if rng.random() < 0.35 and y + thumb.height < height:
            image.paste(thumb, (x0, y + 6))
            y += thumb.height + 12
        for i, label in enumerate(("Like", "Comment", "Share")):
            draw.rounded_rectangle((x0 + i * 110, y + 8, x0 + i * 110 + 96, y + 38), radius=6, outline=muted)
            draw.text((x0 + i * 110 + 18, y + 14), label, font=small, fill=muted)
        y += 56
        draw.line((x0, y, panel - 24, y), fill=muted)
        y += 16
    draw.rectangle((panel, 56, width, height), fill=tuple(max(0, c - 5) for c in bg))
    for row in range(8):
        py = 80 + row * 64
        draw.rounded_rectangle(
            (panel + 20, py, width - 20, py + 52),
            radius=8,
            fill=tuple(min(255, c + 12) for c in bg) if dark else (255, 255, 255),
        )
        draw.text((panel + 32, py + 8), _sentence(rng, 2), font=body, fill=fg)
        draw.text((panel + 32, py + 30), _sentence(rng, 3), font=small, fill=muted)
    return image


# --- bad payloads -----------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with a token IDAT: the header of
    a decompression bomb without the gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _bad_payloads(rng: random.Random, sources: list[Path]) -> list[tuple[str, bytes, str]]:
    whole = _jpeg(_photo(rng, PHOTO_SIZE, sources), 85)
    html = (
        b"<!doctype html>\n<html><head><title>Image not found</title></head>\n"
        b"<body><h1>404</h1><p>The image you requested has moved.</p></body></html>\n"
    )
    return [
        # Cut mid-scan: the header parses, the pixel data ends early.
        ("bad-truncated.jpg", whole[: len(whole) * 2 // 5], "IMAGE_CORRUPT"),
        # What a CDN error page or a login wall sends where an image was expected.
        ("bad-page.html", html, "IMAGE_UNSUPPORTED_FORMAT"),
        ("bad-bomb.png", png_header_only(30000, 30000), "IMAGE_TOO_MANY_PIXELS"),
    ]
