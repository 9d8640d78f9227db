"""Fixtures shared by the server tests: the loopback image host and trap listener, a model
repository holding the fake colour model, and image encoders."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from loadtest.fake_model import publish_fake_version
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
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def model_repo(tmp_path):
    repo = tmp_path / "models"
    publish_fake_version(repo)
    return repo


@pytest.fixture(scope="session")
def real_model(tmp_path_factory) -> tuple[Path, Path]:
    """A real model, built once per test session by the project's own training pipeline (the
    demo config's smoke variant: the same network, data generator, dataset builder, training
    loop, export and metadata as `make model`, on fewer images and one epoch). Returns (model
    repository, demo data's labels.csv)."""
    root = tmp_path_factory.mktemp("real-model")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "run",
            "--config-name",
            "demo",
            "--smoke",
            "--demo-dir",
            str(root / "data"),
            "--dataset",
            str(root / "dataset"),
            "--run",
            str(root / "run"),
            "--models",
            str(root / "models"),
            "--name",
            "moderation",
            "--set",
            f"promote.log_path={root / 'promotions.jsonl'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root / "models", root / "data" / "labels.csv"
