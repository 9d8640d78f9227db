"""Verdicts in and out of the audit store, from the command line.

    python -m server.audit.cli import-verdicts FILE [--format auto|jsonl|csv] [--operator ID]
                                                    [--overwrite] [--audit-url URL]
    python -m server.audit.cli export-verdicts --format jsonl|csv [--output FILE] [--since TIME]
                                               [--until TIME] [--model-name NAME] [--audit-url URL]

--audit-url defaults to $MODERATION_AUDIT_URL, then to the server's default (SQLite under var/).
Exit status: 0 done; 1 some verdicts named records that do not exist or conflicted; 2 invalid
input (nothing of that batch written); 3 the store is unavailable."""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

from server.audit.records import VerdictOutcome
from server.audit.verdicts import FORMATS, check_verdicts, parse_time, read_verdicts, write_export
from server.audit.writer import open_store
from server.config import AuditConfig
from server.errors import AuditStoreUnavailable, InvalidRequest

IMPORT_CHUNK = 1000


def _store(url: str | None):
    return open_store(url or os.environ.get("MODERATION_AUDIT_URL") or AuditConfig().url)


def import_verdicts(args: argparse.Namespace) -> int:
    verdicts = read_verdicts(args.file, args.format, args.operator)
    if not verdicts:
        print(f"{args.file}: no verdicts", file=sys.stderr)
        return 0
    check_verdicts(verdicts, max_count=len(verdicts))
    store = _store(args.audit_url)
    counts: collections.Counter[str] = collections.Counter()
    problems = []
    try:
        # One transaction per chunk: a label that is no class of its record fails that chunk
        # only; re-running the import after a fix is harmless (applied verdicts are UNCHANGED).
        for start in range(0, len(verdicts), IMPORT_CHUNK):
            for result in store.submit_verdicts(verdicts[start : start + IMPORT_CHUNK], overwrite=args.overwrite):
                counts[result.outcome.value] += 1
                if result.outcome in (VerdictOutcome.NOT_FOUND, VerdictOutcome.CONFLICT):
                    problems.append(f"{result.target}: {result.outcome.value}: {result.message}")
    finally:
        store.close()
    for line in problems[:20]:
        print(line, file=sys.stderr)
    summary = ", ".join(f"{counts[o.value]} {o.value}" for o in VerdictOutcome)
    print(f"{args.file}: {len(verdicts)} verdicts: {summary}")
    return 1 if problems else 0


def export_verdicts(args: argparse.Namespace) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    store = _store(args.audit_url)
    try:
        records = store.judged(since=since, until=until, model_name=args.model_name)
    finally:
        store.close()
    if args.output in (None, "-"):
        count = write_export(records, args.format, sys.stdout)
    else:
        # Written aside and renamed, so a reader (the dataset builder) never sees half a file.
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                count = write_export(records, args.format, f)
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    print(
        f"exported {count} verdicts as {args.format}" + (f" to {args.output}" if args.output else ""), file=sys.stderr
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.audit.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import-verdicts", help="apply verdicts from a JSONL or CSV file")
    imp.add_argument("file")
    imp.add_argument("--format", choices=("auto", *FORMATS), default="auto")
    imp.add_argument("--operator", default="", help="operator of rows that name none")
    imp.add_argument("--overwrite", action="store_true", help="replace existing, different verdicts")
    imp.add_argument("--audit-url")
    imp.set_defaults(run=import_verdicts)
    exp = commands.add_parser("export-verdicts", help="write judged records for the training pipeline")
    exp.add_argument("--format", choices=FORMATS, required=True)
    exp.add_argument("--output", help="file to write (default: stdout)")
    exp.add_argument("--since", help="verdicts at or after (ISO 8601 or Unix seconds)")
    exp.add_argument("--until", help="verdicts before (ISO 8601 or Unix seconds)")
    exp.add_argument("--model-name", default="")
    exp.add_argument("--audit-url")
    exp.set_defaults(run=export_verdicts)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (InvalidRequest, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AuditStoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
