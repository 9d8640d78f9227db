"""The decoder every image goes through: the fast JPEG path gives Pillow's pixels exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from model.preprocess import DecodeConfig, decode_image
from server.errors import ImageError, ImageErrorCode


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: photo-like, so every DCT scale and the chroma matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noisy = base + rng.normal(0, 25, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def jpeg(img: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", **save)
    return buffer.getvalue()


def pillow_reference(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """What the decoder did with Pillow alone before the fast path: draft, load, orientation,
    RGB, resize."""
    height, width = size
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (width, height))
    img.load()
    img = ImageOps.exif_transpose(img).convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img)


@pytest.mark.parametrize(
    "width, height",
    [(1024, 768), (600, 340), (1023, 767), (257, 255), (128, 128), (100, 60), (4000, 3000), (130, 1100)],
)
@pytest.mark.parametrize(
    "save",
    [
        {"quality": 90},
        {"quality": 75, "subsampling": 0},
        {"quality": 85, "subsampling": 1},
        {"quality": 80, "progressive": True},
    ],
)
def test_jpeg_pixels_equal_pillows_at_every_scale(width, height, save):
    data = jpeg(photo(width, height), **save)
    for size in ((128, 128), (96, 160)):
        assert np.array_equal(decode_image(data, size), pillow_reference(data, size))


def test_greyscale_jpeg_becomes_three_equal_channels():
    data = jpeg(photo(640, 480).convert("L"))
    out = decode_image(data, (128, 128))
    assert out.shape == (128, 128, 3) and np.array_equal(out, pillow_reference(data, (128, 128)))
    assert np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_applies_it(orientation):
    img = photo(640, 360, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg(img, exif=exif.tobytes())
    assert np.array_equal(decode_image(data, (96, 160)), pillow_reference(data, (96, 160)))


def test_cmyk_jpeg_takes_pillows_path():
    data = jpeg(photo(320, 240).convert("CMYK"))
    assert np.array_equal(decode_image(data, (64, 64)), pillow_reference(data, (64, 64)))


def test_results_are_not_views_of_the_reused_buffer():
    a = decode_image(jpeg(photo(128, 128, seed=1)), (128, 128))
    kept = a.copy()
    decode_image(jpeg(photo(128, 128, seed=2)), (128, 128))
    assert np.array_equal(a, kept)


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_jpeg_is_corrupt(cut):
    data = jpeg(photo(640, 480))
    with pytest.raises(ImageError) as info:
        decode_image(data[: int(len(data) * cut)], (128, 128))
    assert info.value.code is ImageErrorCode.CORRUPT


def test_pixel_limit_is_checked_before_decoding():
    data = jpeg(photo(1000, 1000))
    with pytest.raises(ImageError) as info:
        decode_image(data, (128, 128), DecodeConfig(max_pixels=999_999))
    assert info.value.code is ImageErrorCode.TOO_MANY_PIXELS
