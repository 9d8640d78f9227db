"""tf.data input pipelines over the dataset's shards: parse, decode, augment, balance, batch.

Every random choice is a stateless function of (seed, epoch, position in the epoch): the order
of an epoch and the augmentation of each of its images are the same however often the epoch is
started, which is what lets an interrupted run resume mid-epoch by skipping the batches it has
already trained on.

Elements are (images uint8 [B, S, S, 3], targets, sample weights): targets are class indices
for the softmax head and one-hot rows for the sigmoid head."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.config import AugmentConfig, Config
from training.tfrecords import feature_spec

# Fixed rather than tf.data.AUTOTUNE: with autotuning on, destroying a finished epoch's iterator
# waits for the autotuner's thread to wake (gdb: RootDataset::Iterator::~Iterator blocked on
# Model::OptimizeLoop), which stalled the end of most epochs by 15 to 20 s with both cores idle
# (TensorFlow 2.21, measured on the demo config: 41 s epochs instead of 23 s).
_PARALLEL = os.cpu_count() or 1
_PREFETCH = 2


def _fixed_parallelism(dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


@dataclass(frozen=True)
class InMemory:
    """A split decoded once (TrainConfig.input = memory): images uint8 [N, S, S, 3] and labels
    int [N], in shard order."""

    images: np.ndarray
    labels: np.ndarray

    @classmethod
    def load(cls, files: Sequence[os.PathLike | str]) -> InMemory:
        return cls(*load_arrays(files))


Source = Sequence[os.PathLike | str] | InMemory


def class_weights(counts: Sequence[int]) -> np.ndarray:
    """Per-class loss weights inverse to class frequency, averaging 1 over the examples."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _parse(raw):
    import tensorflow as tf

    parsed = tf.io.parse_single_example(raw, feature_spec())
    image = tf.io.decode_png(parsed["image/encoded"], channels=3)
    return image, tf.cast(parsed["label"], tf.int32)


def augment(image, seed, size: int, cfg: AugmentConfig):
    """Random crop/zoom, horizontal flip, small rotation and colour jitter of one uint8 image,
    deterministic in `seed` (an int32 [2] tensor); returns uint8 [size, size, 3]."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=9)
    x = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    if cfg.crop_min_scale < 1.0:
        scale = tf.random.stateless_uniform([], seeds[0], cfg.crop_min_scale, 1.0)
        # A mild aspect change too: cropped text and photos are seldom exactly square.
        aspect = tf.exp(tf.random.stateless_uniform([], seeds[1], -0.1, 0.1))
        h = tf.minimum(scale * tf.sqrt(aspect), 1.0)
        w = tf.minimum(scale / tf.sqrt(aspect), 1.0)
        top = tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (1.0 - h)
        left = tf.random.stateless_uniform([], seeds[3], 0.0, 1.0) * (1.0 - w)
        box = tf.stack([top, left, top + h, left + w])[None]
        x = tf.image.crop_and_resize(x[None], box, [0], [size, size])[0]
    if cfg.flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[4])
    if cfg.rotation_degrees > 0:
        angle = tf.random.stateless_uniform([], seeds[5], -1.0, 1.0) * (cfg.rotation_degrees * math.pi / 180.0)
        x = _rotate(x, angle, size)
    if cfg.brightness > 0:
        x = tf.image.stateless_random_brightness(x, cfg.brightness, seeds[6])
    if cfg.contrast > 0:
        x = tf.image.stateless_random_contrast(x, 1.0 - cfg.contrast, 1.0 + cfg.contrast, seeds[7])
    if cfg.saturation > 0 or cfg.hue > 0:
        hs = tf.random.experimental.stateless_split(seeds[8], num=2)
        if cfg.saturation > 0:
            x = tf.image.stateless_random_saturation(x, 1.0 - cfg.saturation, 1.0 + cfg.saturation, hs[0])
        if cfg.hue > 0:
            x = tf.image.stateless_random_hue(x, cfg.hue, hs[1])
    x = tf.clip_by_value(x, 0.0, 1.0)
    return tf.cast(tf.round(x * 255.0), tf.uint8)


def _rotate(x, angle, size: int):
    """Rotation about the centre; corners filled by reflection, so no black wedges appear that
    the model could learn as a cue of augmented images."""
    import tensorflow as tf

    c = (size - 1) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    transform = tf.stack([cos, -sin, c - c * cos + c * sin, sin, cos, c - c * sin - c * cos, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None],
        transforms=transform[None],
        output_shape=[size, size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return out[0]


def _targets(labels, head: str, num_classes: int):
    import tensorflow as tf

    return tf.one_hot(labels, num_classes) if head == "sigmoid" else labels


def _epoch_order(labels: np.ndarray, counts: Sequence[int], balance: str, epoch_seed: int) -> np.ndarray:
    """Indices into an in-memory split for one epoch of len(labels) images: a permutation, or
    with balance=sampling every class drawn equally often (each cycling through its own
    permutation)."""
    rng = np.random.default_rng([epoch_seed, 17])
    if balance != "sampling":
        return rng.permutation(len(labels))
    present = [c for c in range(len(counts)) if counts[c] > 0]
    draws = rng.choice(len(present), size=len(labels))
    order = np.empty(len(labels), dtype=np.int64)
    for k, c in enumerate(present):
        members = rng.permutation(np.flatnonzero(labels == c))
        slots = np.flatnonzero(draws == k)
        order[slots] = members[np.arange(len(slots)) % len(members)]
    return order


def train_dataset(source: Source, counts: Sequence[int], cfg: Config, epoch: int):
    """One epoch of training batches: ceil(sum(counts) / batch_size) of them, from the shards
    (a list of files) or from a split already in memory."""
    import tensorflow as tf

    seed = cfg.data.seed
    num_classes = len(cfg.data.class_names)
    total = int(sum(counts))
    epoch_seed = seed * 100_003 + epoch
    if isinstance(source, InMemory):
        order = _epoch_order(source.labels, counts, cfg.train.balance, epoch_seed)
        parsed = tf.data.Dataset.from_tensor_slices((source.images[order], source.labels[order].astype(np.int32)))
    else:
        records = tf.data.TFRecordDataset([os.fspath(f) for f in source])
        records = records.shuffle(
            min(cfg.train.shuffle_buffer, max(1, total)), seed=epoch_seed, reshuffle_each_iteration=False
        )
        parsed = records.map(_parse, num_parallel_calls=_PARALLEL, deterministic=True)
    if cfg.train.balance == "sampling" and not isinstance(source, InMemory):
        # Each class its own endless stream, drawn equally often; an epoch is still `total`
        # images, so epochs and checkpoints mean the same as without balancing. (In memory,
        # _epoch_order has drawn the same way.)
        present = [c for c in range(num_classes) if counts[c] > 0]
        streams = [parsed.filter(lambda _, y, c=c: tf.equal(y, c)).repeat() for c in present]
        parsed = tf.data.Dataset.sample_from_datasets(
            streams, weights=[1.0 / len(present)] * len(present), seed=epoch_seed, stop_on_empty_dataset=False
        ).take(total)
    weights = class_weights(counts) if cfg.train.balance == "weights" else np.ones(num_classes, np.float32)
    weight_table = tf.constant(weights)
    size = cfg.data.input_size

    def prepare(index, element):
        image, label = element
        if cfg.augment.enabled:
            image = augment(image, tf.stack([tf.cast(epoch_seed, tf.int64), index]), size, cfg.augment)
        image = tf.ensure_shape(image, [size, size, 3])
        return image, _targets(label, cfg.train.head, num_classes), tf.gather(weight_table, label)

    batches = parsed.enumerate().map(prepare, num_parallel_calls=_PARALLEL, deterministic=True)
    return _fixed_parallelism(batches.batch(cfg.train.batch_size).prefetch(_PREFETCH))


def eval_dataset(source: Source, cfg: Config, batch_size: int = 128):
    """Un-augmented batches of (images, targets, weights=1), in shard order."""
    import tensorflow as tf

    num_classes = len(cfg.data.class_names)
    size = cfg.data.input_size

    def prepare(image, label):
        image = tf.ensure_shape(image, [size, size, 3])
        return image, _targets(label, cfg.train.head, num_classes), tf.ones([], tf.float32)

    if isinstance(source, InMemory):
        parsed = tf.data.Dataset.from_tensor_slices((source.images, source.labels.astype(np.int32)))
    else:
        records = tf.data.TFRecordDataset([os.fspath(f) for f in source])
        parsed = records.map(_parse, num_parallel_calls=_PARALLEL, deterministic=True)
    return _fixed_parallelism(parsed.map(prepare).batch(batch_size).prefetch(_PREFETCH))


def load_arrays(files: Sequence[os.PathLike | str]) -> tuple[np.ndarray, np.ndarray]:
    """Every image and label of some shards as numpy (uint8 [N, S, S, 3], int [N])."""
    import tensorflow as tf

    if not files:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.int64)
    images, labels = [], []
    records = tf.data.TFRecordDataset([os.fspath(f) for f in files])
    parsed = _fixed_parallelism(records.map(_parse, num_parallel_calls=_PARALLEL, deterministic=True).batch(512))
    for image, label in parsed:
        images.append(image.numpy())
        labels.append(label.numpy())
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)
