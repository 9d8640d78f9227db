"""The audit schema, one list of versioned migrations for both stores.

Append-only: a deployed database is moved forward by the migrations it has not applied yet, and
a migration that has shipped is never edited. Each entry is rendered for its dialect: `{real}`
becomes SQLite's REAL or PostgreSQL's DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes, too coarse
for epoch seconds), so both databases hold the same tables, columns and indexes."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the first release (SQLite only).
    """
    CREATE TABLE audit_records (
        record_id        TEXT PRIMARY KEY,
        created_at       {real} NOT NULL,
        request_id       TEXT NOT NULL,
        post_id          TEXT NOT NULL,
        image_id         TEXT NOT NULL,
        url              TEXT NOT NULL,
        content_sha256   TEXT NOT NULL,
        scores           TEXT NOT NULL,
        top_class        TEXT NOT NULL,
        decision         TEXT NOT NULL,
        reason           TEXT NOT NULL,
        model_name       TEXT NOT NULL,
        model_version    TEXT NOT NULL,
        verdict_class    TEXT,
        verdict_operator TEXT,
        verdict_at       {real},
        verdict_note     TEXT
    );
    CREATE INDEX audit_records_unreviewed ON audit_records (verdict_at, created_at);
    CREATE INDEX audit_records_created ON audit_records (created_at);
    CREATE INDEX audit_records_post ON audit_records (post_id);
    """,
    # 2: the audit loop: sampling weights for drift, review leases, verdict lookups and exports.
    """
    ALTER TABLE audit_records ADD COLUMN sample_weight {real} NOT NULL DEFAULT 1.0;
    ALTER TABLE audit_records ADD COLUMN lease_owner TEXT;
    ALTER TABLE audit_records ADD COLUMN lease_expires_at {real};
    DROP INDEX audit_records_unreviewed;
    CREATE INDEX audit_records_pending ON audit_records (created_at, record_id) WHERE verdict_at IS NULL;
    CREATE INDEX audit_records_judged ON audit_records (verdict_at, record_id) WHERE verdict_at IS NOT NULL;
    CREATE INDEX audit_records_request ON audit_records (request_id, image_id);
    """,
    # 3: what the text reader found (model.reader.types.reading_record(): masked values, boxes,
    # evidence and counts as JSON; never the text read). '{}' for records made without a reader.
    """
    ALTER TABLE audit_records ADD COLUMN reading TEXT NOT NULL DEFAULT '{{}}';
    """,
]

_TYPES = {"sqlite": {"real": "REAL"}, "postgresql": {"real": "DOUBLE PRECISION"}}


def statements(version: int, dialect: str) -> list[str]:
    """The statements of migration `version` (1-based) for `dialect`."""
    script = MIGRATIONS[version - 1].format(**_TYPES[dialect])
    return [s.strip() for s in script.split(";") if s.strip()]
