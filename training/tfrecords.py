"""The dataset's TFRecord shards: one tf.train.Example per image, the image stored encoded.

The pixels stored are the server decoder's output at the model's input size (what the service
feeds the model), encoded as PNG so that they are kept exactly and a shard stays a fraction of
the size of float arrays. Features:

    image/encoded  bytes   PNG, input_size x input_size RGB
    label          int64   index into the manifest's class_names
    label/name     bytes
    post_id, image_id, key, sha256 (of the original image bytes)   bytes
    phash          int64   64-bit DCT perceptual hash (bits as a signed integer)
    group          int64   duplicate group (images within the configured Hamming distance)"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHARD_SUFFIX = ".tfrecord"


@dataclass(frozen=True)
class Example:
    pixels: np.ndarray  # uint8 [size, size, 3]
    label: int
    label_name: str
    post_id: str
    image_id: str
    sha256: str
    phash: int  # unsigned 64-bit
    group: int

    @property
    def key(self) -> str:
        return f"{self.post_id}/{self.image_id}"


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: the shards are rewritten on every dataset build; the size gain of higher levels
    # on 128-pixel images is small.
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def serialize(example: Example, encoded: bytes | None = None) -> bytes:
    import tensorflow as tf

    def b(value: str | bytes) -> tf.train.Feature:
        data = value.encode() if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))

    def i(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        "image/encoded": b(encoded if encoded is not None else encode_png(example.pixels)),
        "label": i(example.label),
        "label/name": b(example.label_name),
        "post_id": b(example.post_id),
        "image_id": b(example.image_id),
        "key": b(example.key),
        "sha256": b(example.sha256),
        "phash": i(_signed(example.phash)),
        "group": i(example.group),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shards(out_dir: str | os.PathLike[str], records: Iterable[bytes], count: int, per_shard: int) -> list[dict]:
    """Writes serialized examples into part-NNNNN-of-MMMMM.tfrecord files; returns
    [{"file", "records"}] with paths relative to out_dir's parent."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = max(1, -(-count // per_shard))
    written: list[dict] = []
    iterator = iter(records)
    for shard in range(shards):
        name = f"part-{shard:05d}-of-{shards:05d}{SHARD_SUFFIX}"
        n = 0
        with tf.io.TFRecordWriter(os.fspath(out / name)) as writer:
            for record in iterator:
                writer.write(record)
                n += 1
                if n == per_shard:
                    break
        written.append({"file": f"{out.name}/{name}", "records": n})
    return written


def feature_spec() -> dict:
    import tensorflow as tf

    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label/name": tf.io.FixedLenFeature([], tf.string),
        "post_id": tf.io.FixedLenFeature([], tf.string),
        "image_id": tf.io.FixedLenFeature([], tf.string),
        "key": tf.io.FixedLenFeature([], tf.string),
        "sha256": tf.io.FixedLenFeature([], tf.string),
        "phash": tf.io.FixedLenFeature([], tf.int64),
        "group": tf.io.FixedLenFeature([], tf.int64),
    }


def read_examples(files: Iterable[str | os.PathLike[str]]) -> Iterator[Example]:
    """Every example of the shards, in file order, decoded to numpy (for evaluation and tests)."""
    import tensorflow as tf

    paths = [os.fspath(f) for f in files]
    if not paths:
        return
    spec = feature_spec()
    for raw in tf.data.TFRecordDataset(paths):
        parsed = tf.io.parse_single_example(raw, spec)
        yield Example(
            pixels=tf.io.decode_png(parsed["image/encoded"], channels=3).numpy(),
            label=int(parsed["label"]),
            label_name=parsed["label/name"].numpy().decode(),
            post_id=parsed["post_id"].numpy().decode(),
            image_id=parsed["image_id"].numpy().decode(),
            sha256=parsed["sha256"].numpy().decode(),
            phash=_unsigned(int(parsed["phash"])),
            group=int(parsed["group"]),
        )


def copy_raw(files: Iterable[str | os.PathLike[str]]) -> Iterator[bytes]:
    """The serialized records of existing shards, unchanged (a frozen split carried over)."""
    import tensorflow as tf

    paths = [os.fspath(f) for f in files]
    if paths:
        for raw in tf.data.TFRecordDataset(paths):
            yield raw.numpy()
