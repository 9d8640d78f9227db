"""The embedded audit store: one SQLite file in WAL mode, versioned migrations."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from server.audit.records import AuditRecord

# Append-only: a deployed database is moved forward by the migrations it has not seen yet.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE audit_records (
        record_id        TEXT PRIMARY KEY,
        created_at       REAL NOT NULL,
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
        verdict_at       REAL,
        verdict_note     TEXT
    );
    CREATE INDEX audit_records_unreviewed ON audit_records (verdict_at, created_at);
    CREATE INDEX audit_records_created ON audit_records (created_at);
    CREATE INDEX audit_records_post ON audit_records (post_id);
    """,
]

COLUMNS = ("record_id", "created_at", "request_id", "post_id", "image_id", "url", "content_sha256", "scores",
           "top_class", "decision", "reason", "model_name", "model_version")


def record_row(record: AuditRecord) -> tuple:
    return (record.record_id, record.created_at, record.request_id, record.post_id, record.image_id, record.url,
            record.content_sha256, json.dumps(record.scores, sort_keys=True), record.top_class, record.decision,
            record.reason.value, record.model_name, record.model_version)


class SQLiteAuditStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupt the file.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                               "applied_at REAL NOT NULL)")
            done = {row[0] for row in self._conn.execute("SELECT version FROM schema_migrations")}
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in filter(str.strip, script.split(";")):
                        self._conn.execute(statement)
                    self._conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                                       (version, time.time()))
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    def write(self, records: list[AuditRecord]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    f"INSERT OR IGNORE INTO audit_records ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                    [record_row(r) for r in records])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
