"""The demo data generator: deterministic, every class present, every file servable."""

from __future__ import annotations

import numpy as np
import pytest

from model.preprocess import decode_image
from training import demo_data
from training.dataset_builder import split_by_post

PER_CLASS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    csv_path = demo_data.write_demo_dataset(out, PER_CLASS, seed=3, workers=1)
    return csv_path, demo_data.read_labels(csv_path)


def test_every_class_is_produced(dataset):
    _, rows = dataset
    assert demo_data.class_counts(rows) == dict.fromkeys(demo_data.CLASS_NAMES, PER_CLASS)
    assert {r.path.suffix for r in rows} <= {".jpg", ".png"}


def test_images_decode_with_the_server_decoder(dataset):
    _, rows = dataset
    sizes = set()
    for row in rows:
        data = row.path.read_bytes()
        image = decode_image(data, (128, 128))
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.std() > 1.0  # not a blank canvas
        sizes.add(len(data))
    assert len(sizes) == len(rows)


def test_same_seed_gives_same_bytes_and_other_seeds_differ():
    for label in demo_data.CLASS_NAMES:
        assert demo_data.generate_image(7, label, 2) == demo_data.generate_image(7, label, 2)
        assert demo_data.generate_image(7, label, 2) != demo_data.generate_image(8, label, 2)


def test_dataset_is_identical_across_runs_and_worker_counts(dataset, tmp_path):
    csv_path, rows = dataset
    again = demo_data.write_demo_dataset(tmp_path, PER_CLASS, seed=3, workers=2)
    other_rows = demo_data.read_labels(again)
    assert again.read_text() == csv_path.read_text()
    assert [r.path.read_bytes() for r in rows] == [r.path.read_bytes() for r in other_rows]


def test_sizes_and_aspects_vary(dataset):
    from PIL import Image

    _, rows = dataset
    shapes = []
    for row in rows:
        with Image.open(row.path) as img:
            shapes.append(img.size)
    assert all(demo_data.MIN_SIDE <= s <= demo_data.MAX_SIDE for shape in shapes for s in shape)
    assert len(set(shapes)) > len(shapes) // 2


def test_reuse_keeps_a_matching_dataset_and_regenerates_otherwise(dataset, tmp_path):
    csv_path = demo_data.write_demo_dataset(tmp_path, 2, seed=1, workers=1)
    stamp = csv_path.stat().st_mtime_ns
    assert demo_data.write_demo_dataset(tmp_path, 2, seed=1, workers=1).stat().st_mtime_ns == stamp
    rows = demo_data.read_labels(demo_data.write_demo_dataset(tmp_path, 3, seed=1, workers=1))
    assert len(rows) == 3 * len(demo_data.CLASS_NAMES)
    assert all(r.path.is_file() for r in rows)


def test_split_keeps_posts_together_and_every_class_on_both_sides(dataset):
    _, rows = dataset
    labels = [demo_data.CLASS_NAMES.index(r.label) for r in rows]
    posts = [r.post_id for r in rows]
    train, held = split_by_post(posts, labels, 0.3, seed=0)
    assert sorted([*train, *held]) == list(range(len(rows)))
    assert not {posts[i] for i in train} & {posts[i] for i in held}
    assert {labels[i] for i in train} == {labels[i] for i in held} == {0, 1, 2}
    again = split_by_post(posts, labels, 0.3, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)
