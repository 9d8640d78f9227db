"""Images for the review page: fetched by the review app, never by the browser, and never served
as the bytes the origin sent.

An audit record holds the image's URL (and the SHA-256 of the bytes that were classified). The
app fetches the URL with the service's SSRF-safe Fetcher (same deny rules, same allow-list, same
byte and time limits), checks the format by its magic bytes and the pixel count from the header
before decoding (model/preprocess.py's rules), decodes the first frame and re-encodes it as a JPEG
no larger than `max_side`. Whatever the origin sent, the browser only ever receives a JPEG made
here, so a file that is an HTML page or a script under an image name cannot reach it as such.

Each decoded image also gets a 64-bit difference hash (dHash) and its mean colour, from which
near-duplicates are grouped (review/dupes.py)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from model.preprocess import DecodeConfig, sniff_format
from server.errors import ImageError
from server.pipeline.fetch import FetchConfig, Fetcher

# A failure (404, timeout) is retried after this long rather than on every queue refresh.
ERROR_TTL_S = 60.0
JPEG_QUALITY = 85


@dataclass(frozen=True)
class ReviewImage:
    jpeg: bytes | None  # None: nothing to show; `error` says why
    error: str = ""
    dhash: int | None = None
    mean_rgb: tuple[int, int, int] | None = None
    # The bytes at the URL are not the ones that were classified: the origin changed the image
    # since, and the operator is not looking at what the model saw.
    changed: bool = False
    width: int = 0
    height: int = 0


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 greyscale thumbnail brighter than its right
    neighbour. Survives re-encoding, rescaling and small edits; a crop or a mirror changes it."""
    small = img.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    pixels = list(small.getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | int(pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return bits


def prepare(data: bytes, expected_sha256: str, decode: DecodeConfig, max_side: int) -> ReviewImage:
    """Validates and re-encodes fetched bytes; never raises for bad data."""
    changed = bool(expected_sha256) and hashlib.sha256(data).hexdigest() != expected_sha256.lower()
    fmt = sniff_format(data)
    if fmt is None or fmt not in decode.formats:
        return ReviewImage(None, f"not an allowed image format (starts with {data[:8]!r})", changed=changed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            if img.width * img.height > decode.max_pixels:
                return ReviewImage(
                    None, f"{img.width}x{img.height} pixels, over the limit of {decode.max_pixels}", changed=changed
                )
            if fmt == "JPEG":
                img.draft("RGB", (max_side, max_side))
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                # The same white background the classifier composites on (model/preprocess.py).
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("RGB")
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            # An RGB image's pixel is a 3-tuple; getpixel's type covers every mode.
            mean = cast(tuple[int, int, int], img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=JPEG_QUALITY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        return ReviewImage(None, f"cannot decode {fmt}: {exc}", changed=changed)
    return ReviewImage(
        out.getvalue(), dhash=dhash(img), mean_rgb=mean, changed=changed, width=img.width, height=img.height
    )


class ImageCache:
    """Fetches, prepares and caches images by (url, content hash); concurrent requests for one
    image share one fetch."""

    def __init__(self, fetch: FetchConfig, decode: DecodeConfig, max_side: int, max_items: int, concurrency: int = 8):
        self._fetcher = Fetcher(fetch)
        self._decode = decode
        self._max_side = max_side
        self._max_items = max_items
        self._cache: OrderedDict[tuple[str, str], tuple[float, ReviewImage]] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        await self._fetcher.start()

    async def close(self) -> None:
        await self._fetcher.close()

    async def get(self, url: str, sha256: str) -> ReviewImage:
        if not url:
            return ReviewImage(None, "sent inline: the audit store keeps its hash, not its bytes")
        key = (url, sha256)
        hit = self._cache.get(key)
        if hit is not None and (hit[1].jpeg is not None or time.monotonic() - hit[0] < ERROR_TTL_S):
            self._cache.move_to_end(key)
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            image = await self._load(url, sha256)
            future.set_result(image)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Marks it retrieved: nobody may be waiting, and it is re-raised here all the same.
            future.exception()
            raise
        finally:
            del self._pending[key]
        self._cache[key] = (time.monotonic(), image)
        while len(self._cache) > self._max_items:
            self._cache.popitem(last=False)
        return image

    async def _load(self, url: str, sha256: str) -> ReviewImage:
        async with self._slots:
            try:
                data = await self._fetcher.fetch(url)
            except ImageError as exc:
                return ReviewImage(None, f"{exc.code.value}: {exc.message}")
        return await asyncio.to_thread(prepare, data, sha256, self._decode, self._max_side)
