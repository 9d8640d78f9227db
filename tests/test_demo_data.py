"""The demo data generator: deterministic, every class and kind present, every file servable,
labels that say what was drawn, and training images drawn only with the training fonts and
photos."""

from __future__ import annotations

import csv
import re
from collections import Counter

import numpy as np
import pytest

from model.preprocess import decode_image
from training import demo_content, demo_data, demo_fonts, demo_kinds, demo_render
from training.dataset_builder import split_by_post

PER_CLASS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    csv_path = demo_data.write_demo_dataset(out, PER_CLASS, seed=3, workers=1)
    return csv_path, demo_data.read_labels(csv_path)


@pytest.fixture(scope="module")
def block():
    """One schedule block (every kind, in its exact share) of personal_info and ham, and a few
    sexual images, as generated (bytes and records)."""
    made = {
        label: [demo_data.generate(5, label, i) for i in range(demo_data.SCHEDULE_BLOCK)]
        for label in ("ham", "personal_info")
    }
    made["sexual"] = [demo_data.generate(5, "sexual", i) for i in range(10)]
    return made


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


def test_label_columns_say_what_was_drawn(dataset):
    csv_path, rows = dataset
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == demo_data.LABEL_COLUMNS
        raw = list(reader)
    train_fonts, train_photos = set(demo_fonts.names("train")), {n for n, _ in demo_render.named_photos("train")}
    for row, record in zip(raw, rows, strict=True):
        assert record.kind == row["kind"] in demo_data.KIND_SHARES[record.label]
        assert row["has_text"] in ("0", "1") and record.has_text == (row["has_text"] == "1")
        assert set(record.entities) <= set(demo_content.ENTITY_TYPES)
        if record.label == "personal_info":
            assert record.has_text and record.entities
        else:
            assert not record.entities
        if record.kind in ("photo", "skin_blobs_photo", "skin_blobs_plain"):
            assert not record.has_text and float(row["text_px"]) == 0 and not row["fonts"]
        else:
            assert float(row["text_px"]) > 0
        assert set(filter(None, row["fonts"].split(";"))) <= train_fonts
        assert set(filter(None, row["backgrounds"].split(";"))) <= train_photos


def test_older_labels_files_still_read(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label,post_id\nimages/ham/00000.jpg,ham,p1\n")
    (row,) = demo_data.read_labels(tmp_path / "labels.csv")
    assert (row.label, row.post_id, row.kind, row.has_text, row.entities) == ("ham", "p1", "", None, ())


def test_every_kind_is_produced_in_its_exact_share():
    for label, shares in demo_data.KIND_SHARES.items():
        assert set(shares) == set(demo_kinds.KINDS[label])
        assert sum(shares.values()) == pytest.approx(1.0)
        for start in (0, demo_data.SCHEDULE_BLOCK * 3):
            kinds = Counter(demo_data.kind_of(2, label, i) for i in range(start, start + demo_data.SCHEDULE_BLOCK))
            assert kinds == {k: round(s * demo_data.SCHEDULE_BLOCK) for k, s in shares.items()}
    # The order within a block depends on the seed.
    assert [demo_data.kind_of(1, "ham", i) for i in range(30)] != [demo_data.kind_of(2, "ham", i) for i in range(30)]


def test_each_kind_renders_and_records_its_text(block):
    for label, made in block.items():
        kinds = {m.kind for m in made}
        assert kinds == set(demo_data.KIND_SHARES[label]), label
        for m in made:
            image = decode_image(m.data, (64, 64))
            assert image.std() > 1.0, m.kind
            assert m.has_text == bool(m.lines)
            assert m.entities == tuple(e for e in demo_content.ENTITY_TYPES if any(e in ents for _, ents in m.lines))


PATTERNS = {
    # US numbers are all in the fictional 555-01xx range; Japanese ones have 10 or 11 digits.
    demo_content.PHONE: re.compile(r"555[-. ]01\d\d|(?:\D|^)0\d{1,3}[-(]?\d{2,4}[-)]?\d{4}|\+81"),
    demo_content.EMAIL: re.compile(r"@(mail\.)?example\.(com|org|net|jp)"),
    demo_content.POSTAL_CODE: re.compile(r"〒?\d{3}-\d{4}|[A-Z]{2} \d{5}|^\d$"),
    demo_content.MESSENGER_ID: re.compile(r"@\w|ID|LINE|WeChat|Kakao|Discord|ライン"),
}


def _ascii_digits(text: str) -> str:
    return text.translate(str.maketrans("０１２３４５６７８９－（）", "0123456789-()"))


def test_entities_match_the_text_drawn(block):
    for m in block["personal_info"]:
        for _, entities in m.lines:
            for entity in entities:
                pattern = PATTERNS.get(entity)
                # Wrapped values keep their entity on every piece; the whole value is in one of them.
                pieces = [t for t, e in m.lines if entity in e]
                if pattern is not None:
                    assert any(pattern.search(_ascii_digits(p)) for p in pieces), (m.kind, entity, pieces)
                else:  # an address: a street or a Japanese place name with a block number
                    assert any(re.search(r"\d", _ascii_digits(p)) for p in pieces), (m.kind, pieces)
    for label in ("ham", "sexual"):
        for m in block[label]:
            assert not m.entities
            for text, _ in m.lines:
                assert not PATTERNS[demo_content.EMAIL].search(text) and "555-01" not in text, (m.kind, text)


def test_training_images_use_only_training_fonts_and_photos(block):
    train_fonts, heldout_fonts = set(demo_fonts.names("train")), set(demo_fonts.names("heldout"))
    train_photos = {n for n, _ in demo_render.named_photos("train")}
    used_fonts, used_photos = set(), set()
    for made in block.values():
        for m in made:
            used_fonts.update(m.fonts)
            used_photos.update(m.backgrounds)
    assert used_fonts <= train_fonts and not used_fonts & heldout_fonts
    assert used_photos <= train_photos and not used_photos & demo_render.PHOTO_HELDOUT
    # Many fonts, handwriting-like ones among them, and many photos are in use.
    hand = {s.name for s in demo_fonts.available("train") if s.style == "hand"}
    assert len(used_fonts) >= 15 and used_fonts & hand and len(used_photos) >= 10


def test_text_is_mostly_legible_with_some_hard_small_cases(block):
    sizes = np.array([m.text_px for m in block["personal_info"]])
    assert np.mean(sizes >= demo_render.LEGIBLE_X_HEIGHT) > 0.7
    assert np.mean(sizes < demo_render.LEGIBLE_X_HEIGHT) > 0.02


def test_font_sets_are_disjoint_and_complete():
    specs = demo_fonts.CATALOGUE
    assert len({s.path for s in specs}) == len(specs)
    assert {s.split for s in specs} == set(demo_fonts.SPLITS)
    train, heldout = set(demo_fonts.names("train")), set(demo_fonts.names("heldout"))
    assert train and heldout and not train & heldout
    for split in demo_fonts.SPLITS:
        present = demo_fonts.available(split)
        for script in demo_fonts.SCRIPTS:
            assert any(s.script == script for s in present), (split, script)
            assert any(s.script == script and s.style == "hand" for s in present), (split, script)
    assert not {n for n, _ in demo_render.named_photos("train")} & {n for n, _ in demo_render.named_photos("heldout")}


def test_every_font_has_printable_ascii_and_the_japanese_ones_kana():
    for split in demo_fonts.SPLITS:
        for spec in demo_fonts.available(split):
            assert all(demo_fonts.has_glyph(spec.path, chr(c)) for c in range(0x21, 0x7F)), spec.name
            assert demo_fonts.has_glyph(spec.path, "あ") == (spec.script == "ja"), spec.name
    latin = next(s for s in demo_fonts.available("train") if s.script == "latin")
    # Japanese text in a Latin face is moved to a Japanese face of the same set.
    assert demo_fonts.covering(latin, "東京都 090").script == "ja"
    assert demo_fonts.covering(latin, "090-1234-5678") == latin


def test_a_font_set_without_a_script_is_an_error(monkeypatch):
    only_latin = tuple(s for s in demo_fonts.CATALOGUE if s.script == "latin")
    monkeypatch.setattr(demo_fonts, "CATALOGUE", only_latin)
    demo_fonts.available.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no ja font of the 'train' set"):
            demo_fonts.available("train")
    finally:
        monkeypatch.undo()
        demo_fonts.available.cache_clear()


def test_missing_fonts_are_skipped(monkeypatch, tmp_path):
    ghost = demo_fonts.FontSpec(tmp_path / "none.ttf", "latin", "sans", "train")
    monkeypatch.setattr(demo_fonts, "CATALOGUE", (ghost, *demo_fonts.CATALOGUE))
    demo_fonts.available.cache_clear()
    try:
        assert ghost not in demo_fonts.available("train")
    finally:
        monkeypatch.undo()
        demo_fonts.available.cache_clear()
