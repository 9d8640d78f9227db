"""Audit logs -> dataset: the noise rules, duplicate grouping, the leak-free split by post, the
frozen evaluation split, TFRecord shards and their manifest, and both kinds of audit store."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from model.preprocess import decode_image
from server.errors import AuditStoreUnavailable
from tests.audit_support import audit_store_fixture  # noqa: F401
from tests.image_host import ImageHost
from tests.training_support import audit_record, class_image, encode, judge, near_duplicate, pattern_image, write_jsonl
from training import audit_log, dataset_builder, tfrecords
from training.audit_log import read_verdict_export
from training.config import Config

CLASSES = ("ham", "sexual", "personal_info")


def noisy_rows(image_dir):
    """An export with every kind of noise the rules handle; comments give the expected fate."""
    for name in "abcdefh":
        (image_dir / f"{name}.png").write_bytes(encode(pattern_image(ord(name))))
    return [
        # Post p1 flagged sexual as a whole; a and b were judged one by one, c never was.
        {"post_id": "p1", "image_id": "a", "image": "a.png", "label": "sexual", "label_level": "post"},
        {"post_id": "p1", "image_id": "b", "image": "b.png", "label": "sexual", "label_level": "post"},
        {
            "post_id": "p1",
            "image_id": "c",
            "image": "c.png",
            "label": "sexual",
            "label_level": "post",
            "operator": "bob",
            "time": "2026-01-02T03:04:05Z",
        },
        {"post_id": "p1", "image_id": "a", "image": "a.png", "label": "sexual", "label_level": "image"},
        {"post_id": "p1", "image_id": "b", "image": "b.png", "label": "ham", "label_level": "image"},
        # Post p2 judged benign as a whole: d takes it, e has its own verdict.
        {"post_id": "p2", "image_id": "d", "image": "d.png", "label": "ham", "label_level": "post"},
        {"post_id": "p2", "image_id": "e", "image": "e.png", "label": "ham", "label_level": "post"},
        {"post_id": "p2", "image_id": "e", "image": "e.png", "label": "personal_info", "label_level": "image"},
        # f judged twice, differently: the later verdict wins whatever the row order.
        {"post_id": "p3", "image_id": "f", "image": "f.png", "label": "sexual", "time": "2026-01-05T00:00:00Z"},
        {"post_id": "p3", "image_id": "f", "image": "f.png", "label": "ham", "time": "2026-01-04T00:00:00Z"},
        # Sent inline: only a content hash in the audit record.
        {"post_id": "p4", "image_id": "g", "image": "", "label": "sexual", "content_sha256": "ab" * 32},
        {"post_id": "p5", "image_id": "h", "image": "h.png", "label": "spam"},
        {"post_id": "", "image_id": "x", "image": "x.png", "label": "ham"},
        {"post_id": "p6", "image_id": "y", "image": "y.png", "label": "ham", "label_level": "thread"},
    ]


def check_cleaned(cleaned, image_dir):
    assert [(k.post_id, k.image_id, k.label) for k in cleaned.kept] == [
        ("p1", "a", "sexual"),
        ("p1", "b", "ham"),
        ("p2", "d", "ham"),
        ("p2", "e", "personal_info"),
        ("p3", "f", "sexual"),
    ]
    assert {k.image for k in cleaned.kept} == {str(image_dir / f"{n}.png") for n in "abdef"}
    assert cleaned.report()["removed"] == {
        "malformed": 2,
        "unknown_label": 1,
        "superseded_verdict": 1,
        "post_label_superseded": 3,
        "post_label_without_image_verdict": 1,
        "no_image_bytes": 1,
    }
    assert cleaned.post_benign_applied == 1 and cleaned.conflicting_verdicts == 1
    assert cleaned.report()["input_rows"] == 14 and cleaned.report()["kept"] == 5
    ((relabel, reason),) = cleaned.relabel
    assert (relabel.post_id, relabel.image_id, relabel.label, relabel.operator) == ("p1", "c", "sexual", "bob")
    assert "no verdict of its own" in reason


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_noise_rules_on_a_hand_built_export(tmp_path, fmt):
    rows = noisy_rows(tmp_path)
    path = tmp_path / f"export.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    else:
        columns = ["post_id", "image_id", "image", "label", "label_level", "operator", "time", "content_sha256"]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    labels, malformed = audit_log.read_export(path)
    cleaned = audit_log.clean(labels, CLASSES, "ham", malformed=malformed)
    check_cleaned(cleaned, tmp_path)

    strict = audit_log.clean(labels, CLASSES, "ham", post_benign_applies=False, malformed=malformed)
    assert [k.image_id for k in strict.kept] == ["a", "b", "e", "f"]
    assert sorted(r.image_id for r, _ in strict.relabel) == ["c", "d"]


def test_hand_off_reader_in_training_dataset(tmp_path):
    path = write_jsonl(
        tmp_path / "v.jsonl",
        [
            {
                "post_id": "post-42",
                "image_id": "cat",
                "image": "http://h/c.png",
                "label": "sexual",
                "label_level": "image",
                "operator": "alice",
            }
        ],
    )
    (label,) = read_verdict_export(path)
    assert (label.post_id, label.image_id, label.image, label.label, label.operator) == (
        "post-42",
        "cat",
        "http://h/c.png",
        "sexual",
        "alice",
    )


def test_split_keeps_posts_and_duplicate_groups_on_one_side_and_is_seeded():
    rng = np.random.default_rng(5)
    n = 600
    posts = [f"p{rng.integers(0, 220)}" for _ in range(n)]
    groups = rng.integers(0, 450, n).tolist()  # random duplicate links across posts
    labels = rng.integers(0, 3, n)
    comps = dataset_builder.components(posts, groups)
    splits = dataset_builder.stratified_split(comps, labels, 0, {"eval": 0.2}, seed=11)
    for key_values in (posts, groups):
        sides: dict = {}
        for key, split in zip(key_values, splits.tolist(), strict=True):
            sides.setdefault(key, set()).add(split)
        assert all(len(s) == 1 for s in sides.values())
    assert set(splits.tolist()) == {"train", "eval"}
    again = dataset_builder.stratified_split(comps, labels, 0, {"eval": 0.2}, seed=11)
    assert (again == splits).all()
    assert (dataset_builder.stratified_split(comps, labels, 0, {"eval": 0.2}, seed=12) != splits).any()


def test_perceptual_hash_groups_near_duplicates_only():
    base = [pattern_image(s) for s in range(40)]
    pixels = [decode_image(encode(img), (64, 64)) for img in base]
    dupes = [decode_image(near_duplicate(img), (64, 64)) for img in base[:5]]
    hashes = [dataset_builder.phash(p) for p in pixels + dupes]
    groups = dataset_builder.hamming_groups(hashes, 6)
    for i in range(5):
        assert groups[40 + i] == groups[i]
    assert len(set(groups[:40].tolist())) == 40


def test_a_close_hash_needs_a_close_thumbnail_too():
    """Screenshots of one app layout share a 64-bit hash; their thumbnails tell them apart."""
    rng = np.random.default_rng(0)
    layout = rng.normal(size=(32, 32)).astype(np.float16)
    other = rng.normal(size=(32, 32)).astype(np.float16)

    def item(name: str, thumb: np.ndarray) -> dataset_builder.Item:
        label = audit_log.AuditLabel(post_id=name, image_id="1", image=f"{name}.png", label="ham")
        return dataset_builder.Item(label=label, label_index=0, encoded=b"", sha256=name, phash=0x1234, thumb=thumb)

    items = [item("a", layout), item("b", (layout + 0.05).astype(np.float16)), item("c", other)]
    kept, report = dataset_builder.deduplicate(items, max_distance=6, keep_all=True, max_thumb_distance=0.1)
    assert [it.group for it in kept] == [0, 0, 2]
    assert report["groups_with_duplicates"] == 1 and report["removed"] == 0
    _, loose = dataset_builder.deduplicate(items, max_distance=6, keep_all=False)
    assert loose["removed"] == 2  # the hash alone: all three are one picture


def build_sources(tmp_path, host):
    """An export with local files, URLs (one of them broken) and near-duplicates across posts."""
    rows = []
    for label in CLASSES:
        for i in range(12):
            post = f"{label}-post-{i // 2}"
            data = class_image(label, i)
            if i % 3 == 0:
                url = host.add(f"/{label}/{i}.png", data, content_type="image/png")
                rows.append({"post_id": post, "image_id": f"img{i}", "image": url, "label": label})
            else:
                (tmp_path / f"{label}-{i}.png").write_bytes(data)
                rows.append({"post_id": post, "image_id": f"img{i}", "image": f"{label}-{i}.png", "label": label})
    # Re-uploads of two images in other posts: each must land with its original's group.
    for label, i in (("sexual", 4), ("personal_info", 7)):
        copy = near_duplicate(Image.open(io.BytesIO(class_image(label, i))))
        (tmp_path / f"copy-{label}.jpg").write_bytes(copy)
        rows.append({"post_id": f"repost-{label}", "image_id": "copy", "image": f"copy-{label}.jpg", "label": label})
    rows.append({"post_id": "broken", "image_id": "x", "image": host.url("/missing.png"), "label": "ham"})
    rows.append(
        {"post_id": "flagged", "image_id": "y", "image": "whatever.png", "label": "sexual", "label_level": "post"}
    )
    return write_jsonl(tmp_path / "export.jsonl", rows)


def read_split(dataset, manifest, split):
    return list(tfrecords.read_examples(dataset_builder.split_files(dataset, split, manifest)))


def test_dataset_build_shards_manifest_duplicates_and_frozen_eval(tmp_path):
    cfg = Config.smoke().with_overrides(["data.validation_fraction=0.15", "data.records_per_shard=10"])
    dataset = tmp_path / "dataset"
    with ImageHost() as host:
        export = build_sources(tmp_path, host)
        manifest = dataset_builder.build_dataset(
            dataset, [dataset_builder.Source("export", str(export))], cfg, log=lambda _: None
        )
        assert host.hits("/missing.png") == 1

    assert manifest["cleaning"]["images_skipped"] == {"unreadable_image": 1}
    assert manifest["cleaning"]["removed"]["post_label_without_image_verdict"] == 1
    assert manifest["duplicates"]["groups_with_duplicates"] == 2
    assert manifest["duplicates"]["images_in_duplicate_groups"] == 4
    # keep_duplicates is off: one image per (group, label) stays.
    assert manifest["duplicates"]["removed"] == 2
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert manifest["labels_sha256"] == hashlib.sha256((dataset / "labels.jsonl").read_bytes()).hexdigest()
    with open(dataset / "relabel.csv") as f:
        assert [(r["post_id"], r["image_id"], r["post_label"]) for r in csv.DictReader(f)] == [
            ("flagged", "y", "sexual")
        ]

    examples = {split: read_split(dataset, manifest, split) for split in dataset_builder.SPLITS}
    for split, found in examples.items():
        counts = dict.fromkeys(CLASSES, 0)
        for e in found:
            counts[e.label_name] += 1
        assert counts == manifest["counts"][split], split
    assert all(manifest["counts"]["eval"][c] >= 1 and manifest["counts"]["train"][c] >= 1 for c in CLASSES)
    # 36 images and 2 re-uploads, less the 2 duplicates (the broken URL and the post-level row
    # never got that far).
    assert sum(map(len, examples.values())) == 12 * 3 + 2 - 2
    # Nothing leaks: no post and no duplicate group on two sides.
    side_of_post, side_of_group = {}, {}
    for split, found in examples.items():
        for e in found:
            assert side_of_post.setdefault(e.post_id, split) == split
            assert side_of_group.setdefault(e.group, split) == split
    # Shards hold the server decoder's pixels, exactly (PNG is lossless).
    sample = next(e for e in examples["train"] if e.image_id != "copy")
    label, i = sample.post_id.split("-post-")[0], int(sample.image_id.removeprefix("img"))
    assert np.array_equal(sample.pixels, decode_image(class_image(label, i), (64, 64)))

    # A rebuild with one more image in an evaluation post: the eval split stays byte for byte,
    # the new image is held back from training.
    eval_bytes = {s["file"]: (dataset / s["file"]).read_bytes() for s in manifest["shards"]["eval"]}
    eval_post = examples["eval"][0].post_id
    (tmp_path / "late.png").write_bytes(encode(pattern_image(999)))
    late = write_jsonl(
        tmp_path / "late.jsonl", [{"post_id": eval_post, "image_id": "late", "image": "late.png", "label": "ham"}]
    )
    with ImageHost() as host:
        export = build_sources(tmp_path, host)
        rebuilt = dataset_builder.build_dataset(
            dataset,
            [dataset_builder.Source("export", str(export)), dataset_builder.Source("export", str(late))],
            cfg,
            log=lambda _: None,
        )
    assert rebuilt["split"]["eval_split_id"] == manifest["split"]["eval_split_id"]
    assert rebuilt["split"]["frozen"] and rebuilt["split"]["held_back_touching_eval"] == 1
    assert {s["file"]: (dataset / s["file"]).read_bytes() for s in rebuilt["shards"]["eval"]} == eval_bytes
    assert rebuilt["counts"]["train"] == manifest["counts"]["train"]
    assert rebuilt["counts"]["validation"] == manifest["counts"]["validation"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]  # no build leftovers

    with ImageHost() as host:
        export = build_sources(tmp_path, host)
        fresh = dataset_builder.build_dataset(
            dataset,
            [dataset_builder.Source("export", str(export))],
            cfg.with_overrides(["data.seed=3"]),
            refreeze=True,
            log=lambda _: None,
        )
    assert fresh["split"]["eval_split_id"] != manifest["split"]["eval_split_id"]


def test_labels_from_sqlite_and_postgresql_audit_stores(audit_store, tmp_path):
    data = [class_image("ham", 1), class_image("sexual", 2), class_image("personal_info", 3)]
    records = [
        audit_record("post-1", "a", "http://127.0.0.1:9/a.png", data[0]),
        audit_record("post-1", "b", "", data[1]),  # inline: no URL
        audit_record("post-2", "c", "http://127.0.0.1:9/c.png", data[2]),
        audit_record("post-3", "d", "http://127.0.0.1:9/d.png", data[0]),
    ]
    audit_store.write(records)
    judge(audit_store, records[:3], ["ham", "sexual", "personal_info"])  # d stays unjudged
    url = audit_store.url if hasattr(audit_store, "url") else f"sqlite:///{audit_store.path}"
    # One transaction, one verdict time: the store's order among them is by record id.
    labels = sorted(audit_log.read_store(url), key=lambda x: x.image_id)
    assert [(x.post_id, x.image_id, x.label, x.label_level, x.operator) for x in labels] == [
        ("post-1", "a", "ham", "image", "alice"),
        ("post-1", "b", "sexual", "image", "alice"),
        ("post-2", "c", "personal_info", "image", "alice"),
    ]
    assert labels[1].content_sha256 == hashlib.sha256(data[1]).hexdigest()
    cleaned = audit_log.clean(labels, CLASSES, "ham")
    assert [x.image_id for x in cleaned.kept] == ["a", "c"] and cleaned.removed["no_image_bytes"] == 1


def test_missing_or_unreachable_audit_store_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        audit_log.read_store(f"sqlite:///{tmp_path / 'none.sqlite3'}")
    assert not (tmp_path / "none.sqlite3").exists()
    with pytest.raises(AuditStoreUnavailable):
        audit_log.read_store("postgresql://nobody@127.0.0.1:9/none")


def test_redact_url():
    assert audit_log.redact_url("postgresql://u:secret@db:5432/x?schema=s") == "postgresql://u:***@db:5432/x?schema=s"
    assert json.dumps(audit_log.redact_url("sqlite:///var/a.sqlite3")) == '"sqlite:///var/a.sqlite3"'


def test_benchmark_generator_makes_every_kind_of_image():
    from training import benchmark_data

    per_class = 40
    for label, variants in benchmark_data.VARIANTS.items():
        assert sum(variants.values()) == pytest.approx(1.0)
        seen = set()
        for index in range(per_class):
            variant = benchmark_data.variant_of(label, index, per_class)
            if variant in seen:
                continue
            seen.add(variant)
            data, ext, made = benchmark_data.generate(3, label, index, per_class)
            assert made == variant and ext in ("png", "jpg")
            assert decode_image(data, (64, 64)).std() > 1.0
        assert seen == set(variants)


def test_benchmark_images_use_only_held_out_fonts_and_photos():
    from training import benchmark_data, demo_fonts, demo_render

    heldout_fonts = set(demo_fonts.names("heldout"))
    heldout_photos = {n for n, _ in demo_render.named_photos("heldout")}
    assert heldout_photos <= demo_render.PHOTO_HELDOUT
    per_class = 40
    fonts, photos, hard = set(), set(), set()
    for label in benchmark_data.VARIANTS:
        for index in range(0, per_class, 3):
            made = benchmark_data.generate_details(3, label, index, per_class)
            fonts.update(made.fonts)
            photos.update(made.backgrounds)
            hard.add(benchmark_data.is_hard(index))
            assert bool(made.entities) == (label == "personal_info")
    assert fonts and fonts <= heldout_fonts and not fonts & set(demo_fonts.names("train"))
    assert photos and photos <= heldout_photos
    assert hard == {True, False}
    # The same index in the same class is the same image, and another seed is another.
    assert benchmark_data.generate(3, "personal_info", 5, per_class) == benchmark_data.generate(
        3, "personal_info", 5, per_class
    )
    assert benchmark_data.generate(3, "personal_info", 5, per_class) != benchmark_data.generate(
        4, "personal_info", 5, per_class
    )


def test_benchmark_labels_file(tmp_path):
    from training import benchmark_data

    labels = benchmark_data.write_benchmark_dataset(tmp_path, 4, workers=1)
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and tuple(rows[0]) == benchmark_data.LABEL_COLUMNS
    for row in rows:
        assert row["variant"] == row["kind"] in benchmark_data.VARIANTS[row["label"]]
        assert row["hard"] in ("0", "1") and row["has_text"] in ("0", "1")
        assert bool(row["entities"]) == (row["label"] == "personal_info")
        assert (tmp_path / row["path"]).is_file()
    stamp = labels.stat().st_mtime_ns
    assert benchmark_data.write_benchmark_dataset(tmp_path, 4, workers=1).stat().st_mtime_ns == stamp
