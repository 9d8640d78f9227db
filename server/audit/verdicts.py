"""Verdicts in and labels out: checking a batch of verdicts, reading verdict files (JSONL or CSV),
and writing the export the training pipeline reads (training's audit-log format).

Import file fields (JSONL keys or CSV header names; others are ignored, so an export file can
be imported back): `record_id`, or `request_id` and `image_id`; `label`; `operator`; optional
`time` (ISO 8601 or Unix seconds; default: when it is imported) and `note`."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from server.audit.records import StoredRecord, Verdict
from server.errors import InvalidRequest

MAX_FIELD = 256
MAX_NOTE = 2000
# The training pipeline's audit-log columns first, then what helps to trace a label back.
EXPORT_COLUMNS = (
    "post_id",
    "image_id",
    "image",
    "label",
    "label_level",
    "operator",
    "time",
    "record_id",
    "request_id",
    "content_sha256",
    "model_name",
    "model_version",
    "decision",
    "top_class",
    "reason",
    "note",
    # The text reader's findings (masked values, boxes) as compact JSON text, so a JSONL row and
    # a CSV row hold the same strings; empty for records made without a reader.
    "reading",
)
FORMATS = ("jsonl", "csv")


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"time {text!r} is neither ISO 8601 nor Unix seconds") from None
            if parsed.tzinfo is None:
                raise ValueError(f"time {text!r} has no time zone; add Z or +00:00") from None
            seconds = parsed.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time {value!r} is not a valid moment")
    return seconds


def check_verdicts(verdicts: Sequence[Verdict], max_count: int) -> None:
    """Structural checks of a batch; raises InvalidRequest naming every problem (the first ten).
    That each label is a class of its record's model is checked by the store, which has the
    record."""
    if not verdicts:
        raise InvalidRequest("no verdicts")
    if len(verdicts) > max_count:
        raise InvalidRequest(f"{len(verdicts)} verdicts, limit {max_count} per call")
    problems = []
    labels: dict[str, str] = {}
    for i, v in enumerate(verdicts):
        where = f"verdicts[{i}]"
        if not v.record_id and not (v.request_id and v.image_id):
            problems.append(f"{where}: name the record by record_id, or by request_id and image_id")
        if v.record_id and (v.request_id or v.image_id):
            problems.append(f"{where}: record_id and request_id/image_id both given; use one")
        if not v.label:
            problems.append(f"{where}: label is empty")
        if not v.operator:
            problems.append(f"{where}: operator id is required")
        for name in ("record_id", "request_id", "image_id", "label", "operator"):
            value = getattr(v, name)
            if len(value) > MAX_FIELD:
                problems.append(f"{where}: {name} is {len(value)} characters, limit {MAX_FIELD}")
            if "\x00" in value:
                problems.append(f"{where}: {name} contains a NUL character")
        if len(v.note) > MAX_NOTE or "\x00" in v.note:
            problems.append(f"{where}: note is over {MAX_NOTE} characters or contains a NUL character")
        if v.judged_at is not None and (not math.isfinite(v.judged_at) or v.judged_at < 0):
            problems.append(f"{where}: time {v.judged_at} is not a valid moment")
        previous = labels.setdefault(v.target, v.label)
        if previous != v.label:
            problems.append(f"{where}: {v.target} is given both {previous!r} and {v.label!r} in one batch")
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise InvalidRequest("; ".join(problems[:10]) + more)


def _verdict_from_fields(fields: dict, where: str, default_operator: str) -> Verdict:
    def text(name: str) -> str:
        value = fields.get(name)
        return "" if value is None else str(value).strip()

    try:
        judged_at = parse_time(fields.get("time"))
    except ValueError as exc:
        raise InvalidRequest(f"{where}: {exc}") from None
    return Verdict(
        label=text("label"),
        operator=text("operator") or default_operator,
        record_id=text("record_id"),
        request_id="" if text("record_id") else text("request_id"),
        image_id="" if text("record_id") else text("image_id"),
        judged_at=judged_at,
        note=text("note"),
    )


def read_verdicts(path: str | Path, fmt: str = "auto", default_operator: str = "") -> list[Verdict]:
    """Reads a JSONL or CSV verdict file (format from the extension unless given)."""
    path = Path(path)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt not in FORMATS:
        raise InvalidRequest(f"format {fmt!r}: use jsonl or csv")
    verdicts = []
    with open(path, newline="", encoding="utf-8") as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            missing = {"label"} - set(reader.fieldnames or ())
            if missing:
                raise InvalidRequest(f"{path}: CSV header lacks {sorted(missing)} (has {reader.fieldnames})")
            for row in reader:
                verdicts.append(_verdict_from_fields(row, f"{path}:{reader.line_num}", default_operator))
        else:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    fields = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidRequest(f"{path}:{number}: not JSON: {exc}") from None
                if not isinstance(fields, dict):
                    raise InvalidRequest(f"{path}:{number}: a JSON object per line is expected")
                verdicts.append(_verdict_from_fields(fields, f"{path}:{number}", default_operator))
    return verdicts


def export_row(record: StoredRecord) -> dict[str, str]:
    """One training label: image-level, since operators judge each image of a post."""
    return {
        "post_id": record.post_id,
        "image_id": record.image_id,
        # Inline images have no URL; content_sha256 still names the bytes.
        "image": record.url,
        "label": record.verdict_label or "",
        "label_level": "image",
        "operator": record.verdict_operator or "",
        "time": iso_time(record.verdict_at) if record.verdict_at is not None else "",
        "record_id": record.record_id,
        "request_id": record.request_id,
        "content_sha256": record.content_sha256,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "decision": record.decision,
        "top_class": record.top_class,
        "reason": record.reason,
        "note": record.verdict_note or "",
        "reading": json.dumps(record.reading, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        if record.reading
        else "",
    }


def write_export(records: Iterable[StoredRecord], fmt: str, out: TextIO) -> int:
    """Writes judged records as JSONL or CSV; returns how many."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use jsonl or csv")
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
    for record in records:
        row = export_row(record)
        if writer is not None:
            writer.writerow(row)
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


def export_text(records: Iterable[StoredRecord], fmt: str) -> str:
    buffer = io.StringIO()
    write_export(records, fmt, buffer)
    return buffer.getvalue()
