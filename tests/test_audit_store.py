"""Both audit stores behind one suite: a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time

import psycopg
import pytest

from model.reader.recognizers import recognize
from model.reader.types import EntityType, Finding, ReadingResult, ReadingStatus, TextLine, reading_record
from server.audit import schema
from server.audit.records import AuditReason, AuditRecord, ReviewFilter, Verdict, VerdictOutcome
from server.audit.verdicts import export_text
from server.audit.writer import open_store
from server.errors import InvalidRequest
from tests.audit_support import PG_BASE_URL, audit_store_fixture, pg_schema, with_schema  # noqa: F401

CLASSES = ("ham", "sexual", "personal_info")
T0 = 1_700_000_000.0


def record(
    i: int,
    reason: AuditReason = AuditReason.FLAGGED,
    decision: str = "REVIEW",
    top: str = "sexual",
    version: str = "1",
    created_at: float | None = None,
    weight: float = 1.0,
    reading: dict | None = None,
) -> AuditRecord:
    scores = {c: (0.8 if c == top else 0.1) for c in CLASSES}
    return AuditRecord(
        request_id=f"req-{i // 2}",
        post_id=f"post-{i // 2}",
        image_id=f"img-{i % 2}",
        url=f"http://images.test/{i}.jpg",
        content_sha256=f"{i:064x}",
        scores=scores,
        top_class=top,
        decision=decision,
        reason=reason,
        model_name="moderation",
        model_version=version,
        created_at=T0 + i if created_at is None else created_at,
        record_id=f"rec-{i:04d}",
        sample_weight=weight,
        reading=reading or {},
    )


@pytest.mark.postgres
def test_both_stores_have_the_same_schema(tmp_path):
    sqlite_store = open_store(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    sqlite_store.close()
    conn = sqlite3.connect(tmp_path / "a.sqlite3")
    sqlite_columns = [r[1] for r in conn.execute("PRAGMA table_info(audit_records)")]
    sqlite_indexes = {r[1] for r in conn.execute("PRAGMA index_list(audit_records)") if not r[1].startswith("sqlite_")}
    sqlite_versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    with pg_schema() as name:
        pg_store = open_store(with_schema(PG_BASE_URL, name))
        assert pg_store.migration_versions() == list(range(1, len(schema.MIGRATIONS) + 1))
        pg_store.close()
        with psycopg.connect(PG_BASE_URL) as pg:
            pg_columns = [
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = 'audit_records' ORDER BY ordinal_position",
                    (name,),
                )
            ]
            pg_indexes = {
                r[0]
                for r in pg.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'audit_records' "
                    "AND indexname NOT LIKE '%%_pkey'",
                    (name,),
                )
            }
            types = dict(
                pg.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = 'audit_records'",
                    (name,),
                ).fetchall()
            )
    assert sqlite_columns == pg_columns
    assert sqlite_indexes == pg_indexes
    assert sqlite_versions == list(range(1, len(schema.MIGRATIONS) + 1))
    assert types["created_at"] == types["verdict_at"] == "double precision"
    assert types["reading"] == "text"


def test_a_first_release_sqlite_file_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for statement in schema.statements(1, "sqlite"):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    conn.execute(
        "INSERT INTO audit_records (record_id, created_at, request_id, post_id, image_id, url, "
        "content_sha256, scores, top_class, decision, reason, model_name, model_version) VALUES "
        "('old', 1, 'r', 'p', 'i', '', 'h', '{\"ham\": 1.0}', 'ham', 'PASS', 'sampled', 'm', '1')"
    )
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.migration_versions() == [1, 2, 3]
        (old,) = store.get(["old"])
        assert old.sample_weight == 1.0 and old.verdict_label is None and old.scores == {"ham": 1.0}
        assert old.reading == {}
    finally:
        store.close()


def test_writes_are_idempotent_on_record_id(audit_store):
    records = [record(i) for i in range(10)]
    audit_store.write(records[:6])
    audit_store.write(records[3:])  # overlaps: a replay after a partial failure
    audit_store.write(records)
    assert audit_store.count() == 10
    got = {r.record_id: r for r in audit_store.get([r.record_id for r in records])}
    first = got["rec-0001"]
    assert (first.post_id, first.image_id, first.request_id) == ("post-0", "img-1", "req-0")
    assert first.scores == {"ham": 0.1, "sexual": 0.8, "personal_info": 0.1}
    assert first.created_at == T0 + 1 and first.reason == "flagged" and first.decision == "REVIEW"


def test_next_for_review_is_oldest_first_leased_and_filtered(audit_store):
    audit_store.write(
        [record(i, created_at=T0 + 10 - i) for i in range(6)]  # rec-0005 is the oldest
        + [
            record(6, AuditReason.SAMPLED, "PASS", "ham", weight=100.0, created_at=T0 + 20),
            record(7, AuditReason.FLAGGED, "BLOCK", "personal_info", version="2", created_at=T0 + 21),
        ]
    )
    now = T0 + 100
    alice = audit_store.next_for_review("alice", 3, 60, now=now)
    assert [r.record_id for r in alice] == ["rec-0005", "rec-0004", "rec-0003"]
    assert all(r.lease_owner == "alice" and r.lease_expires_at == now + 60 for r in alice)
    bob = audit_store.next_for_review("bob", 3, 60, now=now)
    assert [r.record_id for r in bob] == ["rec-0002", "rec-0001", "rec-0000"]
    # Alice reloads: her own leases come back, renewed.
    again = audit_store.next_for_review("alice", 3, 60, now=now + 30)
    assert [r.record_id for r in again] == ["rec-0005", "rec-0004", "rec-0003"]
    assert again[0].lease_expires_at == now + 90
    # Filters.
    carol = audit_store.next_for_review("carol", 10, 60, ReviewFilter(reasons=("sampled",)), now=now)
    assert [r.record_id for r in carol] == ["rec-0006"]
    dave = audit_store.next_for_review(
        "dave",
        10,
        60,
        ReviewFilter(
            model_versions=("2",), decisions=("BLOCK",), top_classes=("personal_info",), model_name="moderation"
        ),
        now=now,
    )
    assert [r.record_id for r in dave] == ["rec-0007"]
    assert audit_store.next_for_review("erin", 10, 60, now=now) == []
    # Bob's, Carol's and Dave's leases expire (Alice renewed hers): their records go to the next reviewer.
    erin = audit_store.next_for_review("erin", 10, 60, now=now + 61)
    assert [r.record_id for r in erin] == ["rec-0002", "rec-0001", "rec-0000", "rec-0006", "rec-0007"]
    # Released records are free at once; another reviewer's release is ignored.
    assert audit_store.release("bob", ["rec-0002"]) == 0
    assert audit_store.release("erin", ["rec-0002", "rec-0001"]) == 2
    assert [r.record_id for r in audit_store.next_for_review("frank", 10, 60, now=now + 62)] == ["rec-0002", "rec-0001"]
    # A judged record is never handed out again.
    audit_store.submit_verdicts([Verdict(label="ham", operator="frank", record_id="rec-0002")])
    assert "rec-0002" not in [r.record_id for r in audit_store.next_for_review("gina", 10, 60, now=now + 10_000)]


def test_concurrent_reviewers_never_get_the_same_record(audit_store):
    audit_store.write([record(i) for i in range(60)])
    handed: list[str] = []
    outcomes: list[VerdictOutcome] = []
    barrier = threading.Barrier(4)

    def review(name: str) -> None:
        barrier.wait()
        while batch := audit_store.next_for_review(name, 4, 600):
            handed.extend(r.record_id for r in batch)
            outcomes.extend(
                r.outcome
                for r in audit_store.submit_verdicts(
                    [Verdict(label="ham", operator=name, record_id=r.record_id) for r in batch]
                )
            )

    threads = [threading.Thread(target=review, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(handed) == [f"rec-{i:04d}" for i in range(60)]  # each exactly once
    assert set(outcomes) == {VerdictOutcome.APPLIED}


def test_verdict_outcomes(audit_store):
    audit_store.write([record(i) for i in range(4)])
    results = audit_store.submit_verdicts(
        [
            Verdict(label="ham", operator="op1", record_id="rec-0000", note="a cat"),
            Verdict(label="sexual", operator="op1", request_id="req-0", image_id="img-1", judged_at=T0 + 500),
            Verdict(label="ham", operator="op1", record_id="rec-9999"),
        ],
        now=T0 + 1000,
    )
    assert [r.outcome for r in results] == [VerdictOutcome.APPLIED, VerdictOutcome.APPLIED, VerdictOutcome.NOT_FOUND]
    assert results[1].record_id == "rec-0001"
    # Retried: unchanged, and the first verdict's time and operator stay.
    again = audit_store.submit_verdicts([Verdict(label="ham", operator="op2", record_id="rec-0000")], now=T0 + 2000)
    assert again[0].outcome == VerdictOutcome.UNCHANGED
    # Another label: a conflict unless overwriting.
    conflict = audit_store.submit_verdicts([Verdict(label="sexual", operator="op2", record_id="rec-0000")])
    assert conflict[0].outcome == VerdictOutcome.CONFLICT and "already judged 'ham'" in conflict[0].message
    rows = {r.record_id: r for r in audit_store.get(["rec-0000", "rec-0001"])}
    assert (
        rows["rec-0000"].verdict_label,
        rows["rec-0000"].verdict_operator,
        rows["rec-0000"].verdict_at,
        rows["rec-0000"].verdict_note,
    ) == ("ham", "op1", T0 + 1000, "a cat")
    assert rows["rec-0001"].verdict_at == T0 + 500
    fixed = audit_store.submit_verdicts(
        [Verdict(label="sexual", operator="lead", record_id="rec-0000")], overwrite=True, now=T0 + 3000
    )
    assert fixed[0].outcome == VerdictOutcome.APPLIED
    (row,) = audit_store.get(["rec-0000"])
    assert (row.verdict_label, row.verdict_operator, row.verdict_at) == ("sexual", "lead", T0 + 3000)


def test_a_label_that_is_no_class_of_the_model_fails_the_whole_batch(audit_store):
    audit_store.write([record(i) for i in range(2)])
    with pytest.raises(InvalidRequest, match=r"verdicts\[1\] \(rec-0001\): label 'violence' is not a class"):
        audit_store.submit_verdicts(
            [
                Verdict(label="ham", operator="op", record_id="rec-0000"),
                Verdict(label="violence", operator="op", record_id="rec-0001"),
            ]
        )
    assert all(r.verdict_label is None for r in audit_store.get(["rec-0000", "rec-0001"]))


def test_exports_backlog_and_drift_rows(audit_store):
    audit_store.write([record(i, created_at=T0 + i) for i in range(5)])
    audit_store.submit_verdicts([Verdict(label="ham", operator="op", record_id="rec-0003")], now=T0 + 50)
    audit_store.submit_verdicts([Verdict(label="sexual", operator="op", record_id="rec-0001")], now=T0 + 60)
    assert [r.record_id for r in audit_store.judged()] == ["rec-0003", "rec-0001"]
    assert [r.record_id for r in audit_store.judged(since=T0 + 55)] == ["rec-0001"]
    assert [r.record_id for r in audit_store.judged(until=T0 + 55)] == ["rec-0003"]
    assert list(audit_store.judged(model_name="other")) == []
    counts, oldest = audit_store.backlog()
    assert counts == {"flagged": 3} and oldest == T0
    rows = audit_store.drift_rows(T0 + 2, 10)
    assert [r.created_at for r in rows] == [T0 + 4, T0 + 3, T0 + 2]
    assert rows[1].verdict_label == "ham" and rows[0].scores["sexual"] == 0.8
    assert len(audit_store.drift_rows(T0, 2)) == 2


def test_time_is_stored_to_the_microsecond(audit_store):
    now = time.time()
    audit_store.write([record(1, created_at=now)])
    (row,) = audit_store.get(["rec-0001"])
    assert abs(row.created_at - now) < 1e-6


# -- what the text reader found ------------------------------------------------------------------

# A reading as model.reader.types.reading_record() writes it: a phone number and an address
# (non-ASCII, so the column's text keeps Japanese as it is), fused with the CNN's score.
READING = reading_record(
    ReadingResult(
        status=ReadingStatus.READ,
        gate_score=0.31,
        findings=(
            Finding(
                EntityType.PHONE, 0.93, (0.25, 0.4, 0.75, 0.52), "090-****-**78", 1, ("phonenumbers:JP", "cue:phone")
            ),
            Finding(EntityType.ADDRESS, 0.71, (0.1, 0.6, 0.9, 0.7), "東京都新宿区***", 2, ("cue:address",)),
        ),
        cue_categories=("phone", "address"),
        lines=3,
        cnn_personal_info=0.41234,
        fused=True,
    )
)


def test_the_reading_is_stored_read_back_and_exported(audit_store):
    audit_store.write([record(0, reading=READING), record(1)])
    got = {r.record_id: r for r in audit_store.get(["rec-0000", "rec-0001"])}
    assert got["rec-0000"].reading == READING
    assert got["rec-0000"].reading["findings"][0]["box"] == [0.25, 0.4, 0.75, 0.52]
    assert got["rec-0001"].reading == {}  # a record made without a reader
    # Every way a row comes back carries it.
    (leased,) = [r for r in audit_store.next_for_review("alice", 10, 60, now=T0) if r.record_id == "rec-0000"]
    assert leased.reading == READING
    assert audit_store.post_records("post-0", 10)[0].reading == READING
    audit_store.submit_verdicts(
        [Verdict(label="personal_info", operator="alice", record_id=r) for r in ("rec-0000", "rec-0001")], now=T0 + 9
    )
    judged = list(audit_store.judged())
    assert [r.reading for r in judged] == [READING, {}]
    # The verdict export: the same compact JSON text in JSONL and CSV, empty without a reader.
    jsonl = [json.loads(line) for line in export_text(judged, "jsonl").splitlines()]
    assert jsonl == list(csv.DictReader(io.StringIO(export_text(judged, "csv"))))
    assert json.loads(jsonl[0]["reading"]) == READING and "東京都新宿区***" in jsonl[0]["reading"]
    assert jsonl[1]["reading"] == ""


def test_the_store_never_holds_an_unmasked_value(tmp_path):
    # A real finding: the recognizers read "TEL 090-1234-5678" and keep only the masked value.
    recognized = recognize([TextLine("TEL 090-1234-5678", 0.98, (0.2, 0.4, 0.8, 0.5))])
    (finding,) = recognized.findings
    assert finding.entity is EntityType.PHONE and finding.masked == "090-****-**78"
    reading = reading_record(
        ReadingResult(
            status=ReadingStatus.READ,
            findings=recognized.findings,
            cue_categories=tuple(c.category for c in recognized.cues),
            lines=1,
        )
    )
    store = open_store(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    try:
        store.write([record(0, reading=reading)])
        store.submit_verdicts([Verdict(label="personal_info", operator="alice", record_id="rec-0000")])
        assert store.get(["rec-0000"])[0].reading["findings"][0]["masked"] == "090-****-**78"
        export = export_text(store.judged(), "jsonl") + export_text(store.judged(), "csv")
    finally:
        store.close()
    files = sorted(tmp_path.glob("audit.sqlite3*"))  # the database, and a WAL if one is left
    data = b"".join(f.read_bytes() for f in files)
    assert b"090-****-**78" in data  # the reading is in the file...
    for needle in ("1234-5678", "12345678", "09012345678"):  # ...and the number is not, in any form
        assert needle.encode() not in data, (needle, files)
        assert needle not in export
