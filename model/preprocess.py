"""Bytes -> model input tensor, safely.

Used by the server for every image and by training for every example, so both see the same
pixels: format allow-list, pixel-count check from the header before any pixel is decoded,
EXIF orientation, first frame of animations, any mode -> RGB, squash-resize to the model's
input size (JPEGs are downscaled in the DCT domain while decoding when much larger).

Colour and greyscale JPEGs, most of what a social product's users upload, are decoded by
libjpeg-turbo through simplejpeg into a reused per-thread buffer: the same library, scale and
pixels as Pillow's path (tested equal), ~10% less time and no large allocation per image."""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import ImageError, ImageErrorCode

# Pillow's own bomb check would raise (or warn) past its limit; ours runs first and is the
# configured one, so switch Pillow's off rather than having two limits that disagree.
Image.MAX_IMAGE_PIXELS = None

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# What ImageOps.exif_transpose does for each EXIF orientation value.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
_buffers = threading.local()


@dataclass(frozen=True)
class DecodeConfig:
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = ALLOWED_FORMATS


def sniff_format(data: bytes) -> str | None:
    """The format named by the magic bytes, or None. Checked before Pillow sees the data so
    that formats Pillow could open but we refuse (TIFF, PSD, ...) never reach a decoder."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    return None


def decode_image(data: bytes, size: tuple[int, int], config: DecodeConfig = DecodeConfig()) -> np.ndarray:
    """Returns a uint8 array of shape (height, width, 3) for size = (height, width).

    Raises ImageError(UNSUPPORTED_FORMAT | CORRUPT | TOO_MANY_PIXELS)."""
    fmt = sniff_format(data)
    if fmt is None or fmt not in config.formats:
        raise ImageError(
            ImageErrorCode.UNSUPPORTED_FORMAT,
            f"not one of {', '.join(config.formats)} (starts with {data[:8]!r})",
        )
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            pixels = img.width * img.height
            if pixels > config.max_pixels:
                raise ImageError(
                    ImageErrorCode.TOO_MANY_PIXELS,
                    f"{img.width}x{img.height} = {pixels} pixels, limit {config.max_pixels}",
                )
            if fmt == "JPEG" and img.mode in ("RGB", "L"):
                return _decode_jpeg(data, img, (width, height))
            if fmt == "JPEG":
                # DCT-domain downscale: decodes at 1/2, 1/4 or 1/8 scale, never below the
                # requested size, which is most of the decode cost for large photos.
                img.draft("RGB", (width, height))
            img.seek(0)  # first frame of an animation
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(ImageErrorCode.CORRUPT, f"cannot decode {fmt}: {exc}") from exc


def _draft_scale(image_size: tuple[int, int], size: tuple[int, int]) -> int:
    """The DCT scale denominator Pillow's draft() picks: the largest of 8, 4, 2, 1 that keeps
    both sides at least the requested size."""
    fits = min(image_size[0] // size[0], image_size[1] // size[1])
    return next((a for a in (8, 4, 2) if fits >= a), 1)


def _decode_jpeg(data: bytes, header: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Pillow's JPEG path (draft, load, exif_transpose, convert, resize) with the pixels decoded
    by simplejpeg. libjpeg-turbo also scales by 3/8, 5/8...: asking for exactly Pillow's power-of-two
    size keeps the pixels the model was trained on."""
    scale = _draft_scale(header.size, size)
    out_w, out_h = -(-header.width // scale), -(-header.height // scale)
    needed = out_w * out_h * 3
    buffer = getattr(_buffers, "array", None)
    if buffer is None or buffer.size < needed:
        buffer = _buffers.array = np.empty(needed, dtype=np.uint8)
    try:
        pixels = simplejpeg.decode_jpeg(data, "RGB", min_width=out_w, min_height=out_h, buffer=buffer)
    except ValueError as exc:  # strict: truncated or corrupt data is an error, not a grey band
        raise ImageError(ImageErrorCode.CORRUPT, f"cannot decode JPEG: {exc}") from exc
    img = Image.fromarray(pixels, "RGB")
    transpose = _ORIENTATION.get(header.getexif().get(_EXIF_ORIENTATION, 1))
    if transpose is not None:
        img = img.transpose(transpose)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # A copy, never a view of the buffer that the next image on this thread overwrites.
    return np.array(img, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white.
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent regions are shown on light backgrounds by the
        # apps we moderate for, and black would hide dark text.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_for_reading(data: bytes, max_side: int, config: DecodeConfig = DecodeConfig()) -> np.ndarray:
    """The image at reading size for the text reader: aspect kept, longest side at most
    `max_side` (never enlarged), EXIF orientation applied, RGB uint8 (height, width, 3).

    Same checks and errors as decode_image; the caller has usually decoded these bytes once
    already for the CNN, so they pass, but a reader must not trust that."""
    fmt = sniff_format(data)
    if fmt is None or fmt not in config.formats:
        raise ImageError(ImageErrorCode.UNSUPPORTED_FORMAT, "not an allowed image format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            if img.width * img.height > config.max_pixels:
                raise ImageError(ImageErrorCode.TOO_MANY_PIXELS, f"{img.width}x{img.height} pixels")
            scale = min(1.0, max_side / max(img.width, img.height, 1))
            target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            if fmt == "JPEG":
                img.draft("RGB", target)
            img.seek(0)
            img.load()
            img = _to_rgb(ImageOps.exif_transpose(img))
            scale = min(1.0, max_side / max(img.width, img.height, 1))
            if scale < 1.0:
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(ImageErrorCode.CORRUPT, f"cannot decode {fmt}: {exc}") from exc
