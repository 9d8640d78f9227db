"""Audit logs (and demo data) -> a versioned dataset of TFRecord shards with a frozen evaluation split.

    <dataset>/
        manifest.json        counts per class and split, sources and their hashes, what every
                             noise rule removed, duplicate counts, the shard list
        labels.jsonl         every image kept, with its split and duplicate group (hashed into
                             the manifest)
        relabel.csv          post-level verdicts not trained on: images to judge one by one
        eval_split.json      the frozen evaluation split: its images' keys, posts and hashes
        eval_thumbs.npy      its images' thumbnails, to find new near-duplicates of them
        train/ validation/ eval/   part-NNNNN-of-MMMMM.tfrecord (training/tfrecords.py)

Steps: read labels from every source -> noise rules (training/audit_log.py) -> fetch or read
each image (plain HTTP with time and size limits, or a local file) -> decode it with the
server's own decoder at the model's input size -> perceptual hash -> duplicate groups (hashes
close perceptual hashes and thumbnails, or equal bytes) -> split by post, stratified by class, with a
fixed seed, so that no post and no duplicate group straddles two splits -> shards. Two images are
duplicates when their hashes are within `phash_max_distance` bits and their brightness-normalised
32x32 thumbnails differ by at most `duplicate_max_thumb_distance` on average: a 64-bit hash
alone calls every screenshot of the same app layout a copy of every other.

The evaluation split is frozen: a rebuild keeps the eval shards of the previous build byte for
byte, so every model is compared on the same images; new images that share a post or a
duplicate group with an evaluation image are held back from training. `refreeze` draws a new
one (and then models evaluated on the old one are no longer comparable). The whole directory is
built aside and swapped in, so a reader never sees half a dataset."""

from __future__ import annotations

import concurrent.futures
import csv
import datetime
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from model.errors import ImageError
from model.preprocess import DecodeConfig, decode_image
from model.repository import file_sha256
from training import audit_log, tfrecords
from training.audit_log import AuditLabel
from training.config import Config, DataConfig

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.jsonl"
RELABEL_FILE = "relabel.csv"
EVAL_SPLIT_FILE = "eval_split.json"
EVAL_THUMBS_FILE = "eval_thumbs.npy"
THUMB_SIZE = 32
SPLITS = ("train", "validation", "eval")
FORMAT_VERSION = 1
MAX_REDIRECTS = 5

Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """Where labels come from: an audit store URL, a verdict export file, or demo labels.csv."""

    kind: str  # "audit" | "export" | "demo"
    location: str

    def __post_init__(self) -> None:
        if self.kind not in ("audit", "export", "demo"):
            raise ValueError(f"source kind {self.kind!r}: use audit, export or demo")


@dataclass
class Item:
    label: AuditLabel
    label_index: int
    encoded: bytes  # PNG of the decoded pixels
    sha256: str  # of the original image bytes
    phash: int
    thumb: np.ndarray  # float16 [32, 32], brightness-normalised grey
    group: int = -1
    split: str = ""


@dataclass
class Loaded:
    items: list[Item] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


# ---------------------------------------------------------------------------------------------
# Reading sources


def read_demo_labels(csv_path: str | os.PathLike[str]) -> list[AuditLabel]:
    """training/demo_data.py's labels.csv (path, label, post_id) as image-level labels."""
    base = Path(csv_path).resolve().parent
    labels = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            rel = row["path"]
            labels.append(
                AuditLabel(
                    post_id=row["post_id"],
                    image_id=Path(rel).with_suffix("").as_posix(),
                    image=os.fspath(base / rel),
                    label=row["label"],
                    operator="demo-generator",
                    source=f"demo:{Path(csv_path).name}:{line}",
                )
            )
    return labels


def collect(sources: Sequence[Source], log: Log) -> tuple[list[AuditLabel], int, list[dict]]:
    """(labels of every source in order, malformed rows, a manifest entry per source)."""
    labels: list[AuditLabel] = []
    malformed = 0
    described = []
    for source in sources:
        if source.kind == "audit":
            rows = audit_log.read_store(source.location)
            entry = {
                "kind": "audit",
                "url": audit_log.redact_url(source.location),
                "rows": len(rows),
                "labels_sha256": audit_log.labels_digest(rows),
            }
        elif source.kind == "export":
            rows, bad = audit_log.read_export(source.location)
            malformed += bad
            entry = {
                "kind": "export",
                "path": os.fspath(source.location),
                "rows": len(rows) + bad,
                "malformed": bad,
                "sha256": file_sha256(source.location),
            }
        else:
            rows = read_demo_labels(source.location)
            entry = {
                "kind": "demo",
                "path": os.fspath(source.location),
                "rows": len(rows),
                "sha256": file_sha256(source.location),
            }
        log(f"source {entry['kind']} {entry.get('url') or entry.get('path')}: {entry['rows']} rows")
        labels.extend(rows)
        described.append(entry)
    return labels, malformed, described


# ---------------------------------------------------------------------------------------------
# Images: bytes, pixels, perceptual hashes


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(("http://", "https://")):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-HTTP URL {newurl!r}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameSchemeRedirects)


def read_image_bytes(ref: str, timeout_s: float, max_bytes: int) -> bytes:
    """The bytes of an image URL (plain HTTP(S) GET) or local file; at most max_bytes.

    Raises OSError (including urllib's errors) or ValueError for an over-long image."""
    if ref.startswith(("http://", "https://")):
        request = urllib.request.Request(ref, headers={"User-Agent": "moderation-training/1"})
        with _OPENER.open(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise ValueError(f"{length} bytes, limit {max_bytes}")
            data = response.read(max_bytes + 1)
    else:
        with open(ref, "rb") as f:
            data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"more than {max_bytes} bytes")
    return data


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT32 = _dct_matrix(32)


def phash(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash: the signs of the 8x8 lowest frequencies (less the DC term) of
    the 32x32 grey image against their median. Robust to re-encoding, rescaling and small
    colour changes; different pictures differ in about half of the bits."""
    grey = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L").resize((32, 32), Image.Resampling.BOX)
    coefficients = _DCT32 @ np.asarray(grey, dtype=np.float64) @ _DCT32.T
    low = coefficients[:8, :8].flatten()
    bits = low > np.median(low[1:])
    bits[0] = False  # the DC term is the mean brightness, not structure
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """32x32 grey, zero mean and unit deviation (flat images stay flat): what two copies of a
    picture share after rescaling, re-encoding and a brightness or contrast change."""
    grey = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L")
    small = np.asarray(grey.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX), dtype=np.float32)
    spread = float(small.std())
    return ((small - small.mean()) / (spread if spread > 1.0 else 1.0)).astype(np.float16)


def thumb_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def hamming_groups(
    hashes: Sequence[int],
    max_distance: int,
    same_bytes: Sequence[str] | None = None,
    confirm: Callable[[int, int], bool] | None = None,
) -> np.ndarray:
    """Duplicate group per image: the smallest index of its connected component, where two
    images connect when their hashes differ in at most max_distance bits and `confirm(i, j)`
    (if given) agrees, or (given same_bytes) their byte hashes are equal."""
    n = len(hashes)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    values = np.array([h & ((1 << 64) - 1) for h in hashes], dtype=np.uint64)
    chunk = 1024
    for start in range(0, n, chunk):
        block = values[start : start + chunk]
        # Only pairs (i, j) with j > i: the upper triangle of this block's rows.
        distances = np.bitwise_count(block[:, None] ^ values[None, start:])
        rows, cols = np.nonzero(distances <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = start + r, start + c
            if j > i and (confirm is None or confirm(i, j)):
                union(i, j)
    if same_bytes is not None:
        first: dict[str, int] = {}
        for i, digest in enumerate(same_bytes):
            union(first.setdefault(digest, i), i)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def touches(
    hashes: Sequence[int],
    reference: Sequence[int],
    max_distance: int,
    confirm: Callable[[int, int], bool] | None = None,
) -> np.ndarray:
    """For each hash, whether some reference hash is within max_distance bits of it (and
    `confirm(i, reference index)` agrees, if given)."""
    out = np.zeros(len(hashes), dtype=bool)
    if not len(hashes) or not len(reference):
        return out
    values = np.array([h & ((1 << 64) - 1) for h in hashes], dtype=np.uint64)
    ref = np.array([h & ((1 << 64) - 1) for h in reference], dtype=np.uint64)
    for start in range(0, len(values), 1024):
        close = np.bitwise_count(values[start : start + 1024, None] ^ ref[None, :]) <= max_distance
        for r, c in zip(*np.nonzero(close), strict=True):
            if not out[start + r] and (confirm is None or confirm(start + int(r), int(c))):
                out[start + r] = True
    return out


def _decode_file(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    with open(path, "rb") as f:
        return decode_image(f.read(), (size, size))


def decode_files(paths: Sequence[str | os.PathLike[str]], size: int, workers: int | None = None) -> np.ndarray:
    """Local image files decoded as the server decodes them: uint8 [N, size, size, 3], in the
    order of `paths`, in `workers` processes. Raises ImageError. (Quantizing a version made by
    the earlier demo trainer regenerates its images this way.)"""
    tasks = [(os.fspath(p), size) for p in paths]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(tasks) < 64:
        images = [_decode_file(t) for t in tasks]
    else:
        # spawn: a forked child would inherit TensorFlow's thread pools if the caller runs it.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            images = pool.map(_decode_file, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(images)


def load_items(labels: Sequence[AuditLabel], data: DataConfig, log: Log) -> Loaded:
    """Reads, decodes and hashes every image, in parallel threads; order follows `labels`."""
    decode_config = DecodeConfig(max_pixels=data.decode_max_pixels)
    size = (data.input_size, data.input_size)

    def one(label: AuditLabel) -> Item | str:
        try:
            raw = read_image_bytes(label.image, data.fetch_timeout_s, data.fetch_max_bytes)
        except (OSError, ValueError):
            return "unreadable_image"
        try:
            pixels = decode_image(raw, size, decode_config)
        except ImageError:
            return "undecodable_image"
        return Item(
            label=label,
            label_index=data.class_names.index(label.label),
            encoded=tfrecords.encode_png(pixels),
            sha256=hashlib.sha256(raw).hexdigest(),
            phash=phash(pixels),
            thumb=thumbnail(pixels),
        )

    workers = data.workers or 2 * (os.cpu_count() or 1)
    loaded = Loaded()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done, result in enumerate(pool.map(one, labels), start=1):
            if isinstance(result, Item):
                loaded.items.append(result)
            else:
                loaded.failures[result] += 1
            if done % 2000 == 0:
                log(f"images: {done}/{len(labels)} read and decoded")
    return loaded


# ---------------------------------------------------------------------------------------------
# Duplicates and the split


def deduplicate(
    items: list[Item], max_distance: int, keep_all: bool, max_thumb_distance: float = float("inf")
) -> tuple[list[Item], dict]:
    """Sets each item's group and, unless keep_all, keeps one image per (group, label): the
    first in input order. Returns (items, report)."""

    def confirm(i: int, j: int) -> bool:
        return thumb_distance(items[i].thumb, items[j].thumb) <= max_thumb_distance

    groups = hamming_groups([it.phash for it in items], max_distance, [it.sha256 for it in items], confirm)
    for item, group in zip(items, groups.tolist(), strict=True):
        item.group = group
    sizes = Counter(groups.tolist())
    multi = {g for g, n in sizes.items() if n > 1}
    labels_per_group: dict[int, set[str]] = {}
    for item in items:
        labels_per_group.setdefault(item.group, set()).add(item.label.label)
    kept, seen = [], set()
    for item in items:
        slot = (item.group, item.label.label)
        if keep_all or slot not in seen:
            kept.append(item)
        seen.add(slot)
    report = {
        "max_hamming_distance": max_distance,
        "max_thumb_distance": max_thumb_distance,
        "groups_with_duplicates": len(multi),
        "images_in_duplicate_groups": sum(sizes[g] for g in multi),
        "exact_byte_duplicates": len(items) - len({it.sha256 for it in items}),
        "removed": len(items) - len(kept),
        "groups_with_conflicting_labels": sum(1 for g in multi if len(labels_per_group[g]) > 1),
    }
    return kept, report


def split_by_post(
    post_ids: Sequence[str], labels: Sequence[int], held_out_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out) by post alone, stratified: each class's posts are split
    separately, by the class of the post's first image, so every class is on both sides when it
    has two posts. The split the earlier demo trainer made (training/quantize.py redraws it for
    the versions it published); datasets split by post and duplicate group (below)."""
    post_class: dict[str, int] = {}
    for post, label in zip(post_ids, labels, strict=True):
        post_class.setdefault(post, int(label))
    rng = np.random.default_rng(seed)
    held_posts: set[str] = set()
    for cls in sorted(set(post_class.values())):
        posts = sorted(p for p, c in post_class.items() if c == cls)
        count = round(held_out_fraction * len(posts))
        if len(posts) >= 2:
            count = min(max(count, 1), len(posts) - 1)
        held_posts.update(rng.permutation(posts)[:count].tolist())
    held = np.array([p in held_posts for p in post_ids], dtype=bool)
    return np.flatnonzero(~held), np.flatnonzero(held)


def components(post_ids: Sequence[str], groups: Sequence[int]) -> np.ndarray:
    """Component id per item: items sharing a post or a duplicate group are connected."""
    n = len(post_ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, object], int] = {}
    for i, (post, group) in enumerate(zip(post_ids, groups, strict=True)):
        for key in (("post", post), ("group", group)):
            j = first.setdefault(key, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def stratified_split(
    component_ids: np.ndarray, labels: np.ndarray, benign: int, fractions: dict[str, float], seed: int
) -> np.ndarray:
    """Split name per item. Components are drawn per class (a component's class: its most common
    bad label, else benign) with a seeded permutation; `fractions` maps split names to shares of
    each class's components, and the rest is "train"."""
    members: dict[int, list[int]] = {}
    for i, comp in enumerate(component_ids.tolist()):
        members.setdefault(comp, []).append(i)
    comp_class: dict[int, int] = {}
    for comp, idx in members.items():
        counts = Counter(int(labels[i]) for i in idx if labels[i] != benign)
        comp_class[comp] = counts.most_common(1)[0][0] if counts else benign
    rng = np.random.default_rng(seed)
    out = np.array(["train"] * len(component_ids), dtype=object)
    for cls in sorted(set(comp_class.values())):
        comps = rng.permutation(sorted(c for c, k in comp_class.items() if k == cls)).tolist()
        start = 0
        for split, fraction in fractions.items():
            count = round(fraction * len(comps)) if fraction > 0 else 0
            if fraction > 0 and len(comps) - start >= 2:
                count = min(max(count, 1), len(comps) - start - 1)
            for comp in comps[start : start + count]:
                out[members[comp]] = split
            start += count
    return out


# ---------------------------------------------------------------------------------------------
# Building


def build_dataset(
    out_dir: str | os.PathLike[str], sources: Sequence[Source], config: Config, refreeze: bool = False, log: Log = print
) -> dict:
    """Builds (or rebuilds) the dataset under out_dir; returns its manifest."""
    data = config.data
    out = Path(out_dir)
    labels, malformed, described = collect(sources, log)
    cleaned = audit_log.clean(labels, data.class_names, data.benign_class, data.post_benign_applies, malformed)
    log(
        f"noise rules: kept {len(cleaned.kept)} of {len(labels) + malformed} rows; removed "
        + ", ".join(f"{k} {v}" for k, v in cleaned.report()["removed"].items() if v)
        + f"; {len(cleaned.relabel)} sent for relabelling"
    )
    loaded = load_items(cleaned.kept, data, log)
    if loaded.failures:
        log("images skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(loaded.failures.items())))
    items, duplicates = deduplicate(
        loaded.items, data.phash_max_distance, data.keep_duplicates, data.duplicate_max_thumb_distance
    )
    log(
        f"duplicates: {duplicates['groups_with_duplicates']} groups holding "
        f"{duplicates['images_in_duplicate_groups']} images; {duplicates['removed']} removed"
    )

    frozen = None if refreeze else load_eval_split(out)
    if frozen is not None and (
        frozen["class_names"] != list(data.class_names) or frozen["input_size"] != data.input_size
    ):
        raise ValueError(
            f"{out / EVAL_SPLIT_FILE} was frozen for classes {frozen['class_names']} at "
            f"{frozen['input_size']} pixels; rebuild with refreeze to change them"
        )
    split_report = _assign_splits(items, frozen, _load_eval_thumbs(out) if frozen else None, data)

    counts = {split: dict.fromkeys(data.class_names, 0) for split in SPLITS}
    for item in items:
        if item.split in counts:
            counts[item.split][item.label.label] += 1
    if frozen is not None:
        counts["eval"] = dict(frozen["counts"])
    if not any(counts["train"].values()):
        raise ValueError("no images left to train on; see the noise-rule counts above")

    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=parent))
    try:
        shards = _write_split_shards(tmp, items, frozen, out, data)
        labels_path = tmp / LABELS_FILE
        with open(labels_path, "w", encoding="utf-8") as f:
            for item in items:
                row = {
                    "post_id": item.label.post_id,
                    "image_id": item.label.image_id,
                    "image": item.label.image,
                    "label": item.label.label,
                    "operator": item.label.operator,
                    "time": item.label.time,
                    "source": item.label.source,
                    "sha256": item.sha256,
                    "phash": f"{item.phash:016x}",
                    "group": item.group,
                    "split": item.split or "held_back",
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        audit_log.write_relabel(tmp / RELABEL_FILE, cleaned.relabel)
        if frozen is None:
            frozen, thumbs = _freeze(items, data)
        else:
            thumbs = _load_eval_thumbs(out)
        np.save(tmp / EVAL_THUMBS_FILE, thumbs)
        (tmp / EVAL_SPLIT_FILE).write_text(json.dumps(frozen, indent=1) + "\n", encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "class_names": list(data.class_names),
            "benign_class": data.benign_class,
            "input_size": data.input_size,
            "sources": described,
            "labels_file": LABELS_FILE,
            "labels_sha256": file_sha256(labels_path),
            "relabel_file": RELABEL_FILE,
            "cleaning": {**cleaned.report(), "images_skipped": dict(sorted(loaded.failures.items()))},
            "duplicates": duplicates,
            "split": {
                **split_report,
                "eval_split_id": frozen["split_id"],
                "seed": data.seed,
                "eval_fraction": data.eval_fraction,
                "validation_fraction": data.validation_fraction,
                "by": "post and duplicate group, stratified by class",
            },
            "counts": counts,
            "shards": shards,
            "data_config": config.to_dict()["data"],
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    state = "kept frozen" if split_report["frozen"] else "new"
    log(
        f"dataset {out}: "
        + "; ".join(f"{s} {sum(c.values())} {c}" for s, c in counts.items())
        + f"; eval split {manifest['split']['eval_split_id'][:12]} ({state})"
    )
    return manifest


def _assign_splits(items: list[Item], frozen: dict | None, eval_thumbs: np.ndarray | None, data: DataConfig) -> dict:
    labels = np.array([it.label_index for it in items], dtype=np.int64)
    benign = data.class_names.index(data.benign_class)
    comps = components([it.label.post_id for it in items], [it.group for it in items])
    report = {"frozen": frozen is not None, "already_in_eval": 0, "eval_label_changed": 0, "held_back_touching_eval": 0}
    if frozen is None:
        splits = stratified_split(comps, labels, benign, {"eval": data.eval_fraction}, data.seed)
        for item, split in zip(items, splits.tolist(), strict=True):
            item.split = split
        held = np.array([it.split == "eval" for it in items], dtype=bool)
    else:
        eval_keys = dict(frozen["labels"])
        eval_posts = set(frozen["post_ids"])
        eval_sha = set(frozen["sha256"])
        near = touches(
            [it.phash for it in items],
            [int(h, 16) for h in frozen["phashes"]],
            data.phash_max_distance,
            lambda i, j: thumb_distance(items[i].thumb, eval_thumbs[j]) <= data.duplicate_max_thumb_distance,
        )
        held_components = set()
        for i, item in enumerate(items):
            key = f"{item.label.post_id}/{item.label.image_id}"
            in_eval = key in eval_keys
            if in_eval:
                report["already_in_eval"] += 1
                report["eval_label_changed"] += int(eval_keys[key] != item.label.label)
            # Kept as they were frozen: the eval shards are carried over, not rewritten.
            item.split = "eval" if in_eval else ""
            if in_eval or item.label.post_id in eval_posts or item.sha256 in eval_sha or near[i]:
                held_components.add(int(comps[i]))
        held = np.array([int(c) in held_components for c in comps], dtype=bool)
        report["held_back_touching_eval"] = int(held.sum()) - report["already_in_eval"]
    # Validation by a hash of each component's first post, not by drawing: the same images
    # land in validation whether the evaluation split was just drawn or carried over, so a
    # rebuild from the same labels gives the same dataset (and an interrupted run can resume).
    share = data.validation_fraction / (1.0 - data.eval_fraction)
    first_post: dict[int, str] = {}
    for comp, item in zip(comps.tolist(), items, strict=True):
        first_post[comp] = min(first_post.get(comp, item.label.post_id), item.label.post_id)
    for i in np.flatnonzero(~held).tolist():
        digest = hashlib.sha256(f"{data.seed}:{first_post[int(comps[i])]}".encode()).digest()
        items[i].split = "validation" if int.from_bytes(digest[:8], "big") / 2**64 < share else "train"
    return report


def _freeze(items: list[Item], data: DataConfig) -> tuple[dict, np.ndarray]:
    """The record of a new evaluation split, and its images' thumbnails (aligned with
    `phashes`)."""
    chosen = sorted((it for it in items if it.split == "eval"), key=lambda it: (it.label.post_id, it.label.image_id))
    keys = sorted(f"{it.label.post_id}/{it.label.image_id}" for it in chosen)
    counts = dict.fromkeys(data.class_names, 0)
    for it in chosen:
        counts[it.label.label] += 1
    thumbs = np.stack([it.thumb for it in chosen]) if chosen else np.zeros((0, THUMB_SIZE, THUMB_SIZE), np.float16)
    return {
        "split_id": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "class_names": list(data.class_names),
        "input_size": data.input_size,
        "counts": counts,
        "labels": {f"{it.label.post_id}/{it.label.image_id}": it.label.label for it in chosen},
        "post_ids": sorted({it.label.post_id for it in chosen}),
        "sha256": sorted({it.sha256 for it in chosen}),
        "phashes": [f"{it.phash:016x}" for it in chosen],
    }, thumbs


def _write_split_shards(tmp: Path, items: list[Item], frozen: dict | None, old: Path, data: DataConfig) -> dict:
    rng = np.random.default_rng(data.seed)
    shards: dict[str, list[dict]] = {}
    for split in SPLITS:
        if split == "eval" and frozen is not None:
            # Carried over unchanged: hard links where the filesystem allows, else copies.
            (tmp / "eval").mkdir()
            old_manifest = json.loads((old / MANIFEST_FILE).read_text(encoding="utf-8"))
            for shard in old_manifest["shards"]["eval"]:
                src, dst = old / shard["file"], tmp / shard["file"]
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            shards["eval"] = old_manifest["shards"]["eval"]
            continue
        chosen = [it for it in items if it.split == split]
        # Shuffled once here, so that every shard mixes the classes and a modest shuffle buffer
        # in the input pipeline is enough.
        order = rng.permutation(len(chosen)).tolist()
        records = (tfrecords.serialize(_example(chosen[i]), chosen[i].encoded) for i in order)
        shards[split] = tfrecords.write_shards(tmp / split, records, len(chosen), data.records_per_shard)
    return shards


def _example(item: Item) -> tfrecords.Example:
    return tfrecords.Example(
        pixels=np.zeros((0, 0, 3), np.uint8),
        label=item.label_index,
        label_name=item.label.label,
        post_id=item.label.post_id,
        image_id=item.label.image_id,
        sha256=item.sha256,
        phash=item.phash,
        group=item.group,
    )


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Reading a built dataset


def load_manifest(dataset_dir: str | os.PathLike[str]) -> dict:
    path = Path(dataset_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset at {dataset_dir}: build one with `make train` or `python -m training dataset`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _load_eval_thumbs(dataset_dir: Path) -> np.ndarray:
    return np.load(dataset_dir / EVAL_THUMBS_FILE)


def load_eval_split(dataset_dir: str | os.PathLike[str]) -> dict | None:
    path = Path(dataset_dir) / EVAL_SPLIT_FILE
    if not path.is_file() or not (Path(dataset_dir) / MANIFEST_FILE).is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def split_files(dataset_dir: str | os.PathLike[str], split: str, manifest: dict | None = None) -> list[Path]:
    manifest = manifest or load_manifest(dataset_dir)
    return [Path(dataset_dir) / shard["file"] for shard in manifest["shards"].get(split, []) if shard["records"]]


def split_size(manifest: dict, split: str) -> int:
    return sum(shard["records"] for shard in manifest["shards"].get(split, []))
