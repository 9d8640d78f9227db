"""Bytes -> model input tensor, safely.

Used by the server for every image and by training for every example, so both see the same
pixels: format allow-list, pixel-count check from the header before any pixel is decoded,
EXIF orientation, first frame of animations, any mode -> RGB, squash-resize to the model's
input size (JPEGs are downscaled in the DCT domain while decoding when much larger)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import ImageError, ImageErrorCode

# Pillow's own bomb check would raise (or warn) past its limit; ours runs first and is the
# configured one, so switch Pillow's off rather than having two limits that disagree.
Image.MAX_IMAGE_PIXELS = None

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


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
            img = Image.open(io.BytesIO(data), formats=[fmt])
            pixels = img.width * img.height
            if pixels > config.max_pixels:
                raise ImageError(
                    ImageErrorCode.TOO_MANY_PIXELS,
                    f"{img.width}x{img.height} = {pixels} pixels, limit {config.max_pixels}",
                )
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
