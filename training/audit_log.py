"""Labelled records from the audit loop, and the noise rules that turn them into training labels.

Sources: the audit store itself (an SQLite file or a PostgreSQL URL, read through
server.audit's store) and verdict export files, JSONL or CSV, as written by
`python -m server.audit.cli export-verdicts` or by hand (format in docs/retraining.md).

Every non-benign class is "bad". The rules, in order, each counted in the report:

- `malformed`: a file row without post_id, image_id or label, or with an unknown label level.
- `unknown_label`: a label that is not one of the model's classes.
- `superseded_verdict`: an image judged more than once at the same level; the latest verdict
  (by time, then by position in the input) wins.
- `post_label_superseded`: a post-level label on an image that has its own image-level
  verdict: the image's own verdict wins.
- `post_label_without_image_verdict`: a post-level *bad* label on an image with no verdict of
  its own. A post is flagged when any one of its images is bad, so the post's label says
  nothing certain about this image: it is never trained on, but listed for relabelling.
- a post-level *benign* label says no image of the post is bad, so images without their own
  verdict take it (unless `post_benign_applies` is off: then they are listed for relabelling).
- `no_image_bytes`: an image sent inline to the service: the audit record keeps only its content
  hash, so there are no bytes to train on."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from server.audit.verdicts import export_row, parse_time

LABEL_LEVELS = ("image", "post")
REQUIRED_COLUMNS = ("post_id", "image_id", "label")
RELABEL_COLUMNS = ("post_id", "image_id", "image", "post_label", "operator", "time", "reason", "source")
# Removal rules in the order they apply, for reports.
RULES = (
    "malformed",
    "unknown_label",
    "superseded_verdict",
    "post_label_superseded",
    "post_label_without_image_verdict",
    "no_image_bytes",
)


@dataclass(frozen=True)
class AuditLabel:
    """One labelled image: a row of an export file or a judged audit record."""

    post_id: str
    image_id: str
    image: str  # http(s) URL, or a local path (relative ones against the export file's folder)
    label: str
    label_level: str = "image"
    operator: str = ""
    time: float | None = None
    content_sha256: str = ""
    source: str = ""  # where the row came from, for reports: file:line, or the store

    @property
    def key(self) -> tuple[str, str]:
        return (self.post_id, self.image_id)

    @property
    def is_url(self) -> bool:
        return self.image.startswith(("http://", "https://"))


@dataclass
class CleanResult:
    kept: list[AuditLabel]
    relabel: list[tuple[AuditLabel, str]]  # (post-level row, why it needs an image-level verdict)
    removed: Counter[str] = field(default_factory=Counter)
    post_benign_applied: int = 0
    conflicting_verdicts: int = 0  # images whose repeated verdicts disagreed (latest kept)

    def report(self) -> dict:
        return {
            "input_rows": len(self.kept) + sum(self.removed.values()),
            "kept": len(self.kept),
            "removed": {rule: int(self.removed.get(rule, 0)) for rule in RULES},
            "relabel": len(self.relabel),
            "post_benign_applied": self.post_benign_applied,
            "conflicting_verdicts": self.conflicting_verdicts,
        }


def redact_url(url: str) -> str:
    """A source URL without its password, for manifests and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _label_from_fields(fields: dict, base: Path, where: str) -> AuditLabel | None:
    post_id, image_id, label = (_text(fields.get(k)) for k in REQUIRED_COLUMNS)
    level = _text(fields.get("label_level")).lower() or "image"
    if not post_id or not image_id or not label or level not in LABEL_LEVELS:
        return None
    try:
        time = parse_time(fields.get("time"))
    except ValueError:
        return None
    image = _text(fields.get("image"))
    if image and not image.startswith(("http://", "https://")):
        if image.startswith("file://"):
            image = image.removeprefix("file://")
        image = os.fspath(base / image)  # an absolute path stays as it is
    return AuditLabel(
        post_id=post_id,
        image_id=image_id,
        image=image,
        label=label,
        label_level=level,
        operator=_text(fields.get("operator")),
        time=time,
        content_sha256=_text(fields.get("content_sha256")),
        source=where,
    )


def read_export(path: str | os.PathLike[str], fmt: str = "auto") -> tuple[list[AuditLabel], int]:
    """Rows of a verdict export (JSONL or CSV, format from the extension unless given).

    Returns (labels, malformed row count). Raises ValueError when the file as a whole is not an
    export: a CSV header without the required columns, or JSONL that is not JSON."""
    path = Path(path)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"export format {fmt!r}: use jsonl or csv")
    base = path.resolve().parent
    labels: list[AuditLabel] = []
    malformed = 0
    with open(path, newline="", encoding="utf-8") as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: CSV header lacks {sorted(missing)} (has {reader.fieldnames})")
            rows: Iterable[tuple[int, dict]] = ((reader.line_num, row) for row in reader)
        else:
            rows = _jsonl_rows(f, path)
        for line, fields in rows:
            label = _label_from_fields(fields, base, f"{path.name}:{line}")
            if label is None:
                malformed += 1
            else:
                labels.append(label)
    return labels, malformed


def read_verdict_export(path: str | os.PathLike[str]) -> list[AuditLabel]:
    """The labelled rows of a verdict export (`python -m server.audit.cli export-verdicts`,
    JSONL or CSV), before the noise rules; malformed rows are left out. The dataset builder
    (training/dataset_builder.py) goes on from there."""
    return read_export(path)[0]


def _jsonl_rows(f, path: Path) -> Iterable[tuple[int, dict]]:
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
        yield number, fields if isinstance(fields, dict) else {}


def read_store(
    url: str, since: float | None = None, until: float | None = None, model_name: str = ""
) -> list[AuditLabel]:
    """Judged records of an audit store (sqlite:///path or postgresql://...), image-level.

    Raises FileNotFoundError for an SQLite file that does not exist (opening it would create an
    empty store), server.errors.AuditStoreUnavailable when the database cannot be reached."""
    from server.audit.writer import open_store

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise FileNotFoundError(f"no audit store at {url}")
    store = open_store(url)
    try:
        records = list(store.judged(since=since, until=until, model_name=model_name))
    finally:
        store.close()
    where = f"store:{redact_url(url)}"
    labels = []
    for record in records:
        row = export_row(record)
        labels.append(
            AuditLabel(
                post_id=row["post_id"],
                image_id=row["image_id"],
                image=row["image"],
                label=row["label"],
                label_level="image",
                operator=row["operator"],
                time=record.verdict_at,
                content_sha256=row["content_sha256"],
                source=f"{where}#{record.record_id}",
            )
        )
    return labels


def labels_digest(labels: Sequence[AuditLabel]) -> str:
    """sha256 of the labels in a canonical form: what a manifest records as the label file's hash
    for sources that are not files (the store)."""
    digest = hashlib.sha256()
    for label in labels:
        row = dataclasses.asdict(label)
        row.pop("source")
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def clean(
    labels: Sequence[AuditLabel],
    class_names: Sequence[str],
    benign_class: str,
    post_benign_applies: bool = True,
    malformed: int = 0,
) -> CleanResult:
    """Applies the noise rules (module docstring) and returns the image-level labels to train on,
    in input order, with the post-level rows sent back for relabelling and the counts per rule."""
    removed: Counter[str] = Counter()
    removed["malformed"] = malformed
    known = []
    for label in labels:
        if label.label in class_names:
            known.append(label)
        else:
            removed["unknown_label"] += 1

    # The latest verdict per (image, level); ties keep the later row.
    latest: dict[tuple[str, tuple[str, str]], tuple[int, AuditLabel]] = {}
    conflicting: set[tuple[str, str]] = set()
    for index, label in enumerate(known):
        slot = (label.label_level, label.key)
        previous = latest.get(slot)
        if previous is not None:
            removed["superseded_verdict"] += 1
            if previous[1].label != label.label:
                conflicting.add(label.key)
            if (label.time or 0.0) < (previous[1].time or 0.0):
                continue
        latest[slot] = (index, label)

    image_level = {key: item for (level, key), item in latest.items() if level == "image"}
    chosen: list[tuple[int, AuditLabel]] = list(image_level.values())
    relabel: list[tuple[AuditLabel, str]] = []
    post_benign_applied = 0
    for (level, key), (index, label) in latest.items():
        if level != "post":
            continue
        if key in image_level:
            removed["post_label_superseded"] += 1
        elif label.label != benign_class:
            removed["post_label_without_image_verdict"] += 1
            relabel.append((label, f"post labelled {label.label}; this image has no verdict of its own"))
        elif post_benign_applies:
            post_benign_applied += 1
            chosen.append((index, dataclasses.replace(label, label_level="image")))
        else:
            removed["post_label_without_image_verdict"] += 1
            relabel.append((label, "post labelled benign; post_benign_applies is off"))

    kept = []
    for _, label in sorted(chosen, key=lambda item: item[0]):
        if label.image:
            kept.append(label)
        else:
            removed["no_image_bytes"] += 1
    relabel.sort(key=lambda item: item[0].key)
    return CleanResult(
        kept=kept,
        relabel=relabel,
        removed=removed,
        post_benign_applied=post_benign_applied,
        conflicting_verdicts=len(conflicting),
    )


def write_relabel(path: str | os.PathLike[str], relabel: Sequence[tuple[AuditLabel, str]]) -> None:
    """The images operators should judge one by one: post-level rows that were not trained on."""
    from server.audit.verdicts import iso_time

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(RELABEL_COLUMNS)
        for label, reason in relabel:
            writer.writerow(
                [
                    label.post_id,
                    label.image_id,
                    label.image,
                    label.label,
                    label.operator,
                    iso_time(label.time) if label.time is not None else "",
                    reason,
                    label.source,
                ]
            )
