"""Fixtures shared by the server tests: the loopback image host and trap listener, a model
repository holding the fake colour model, and image encoders."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.fake_model import publish_fake_version
from tests.image_host import image_host_fixture, trap_fixture  # noqa: F401


def encode(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height with almost no pixel data: a pixel bomb's
    header, without spending gigabytes to make a real one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def model_repo(tmp_path):
    repo = tmp_path / "models"
    publish_fake_version(repo)
    return repo
