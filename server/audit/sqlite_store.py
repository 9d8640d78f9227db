"""The embedded audit store: one SQLite file in WAL mode, the schema of server/audit/schema.py.

Writes go through one connection under a lock (SQLite allows one writer at a time anyway);
reads use a second connection, which WAL lets run beside a write, so a drift query over a week
of records never holds up the audit writer."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from server.audit import schema
from server.audit.sql_store import SQLAuditStore
from server.errors import AuditStoreUnavailable


def _unavailable(exc: BaseException) -> bool:
    # Locked, busy, I/O error, disk full, corrupt file: the database's trouble, worth retrying.
    # Constraint and programming errors are the data's or the code's, and retrying won't help.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError | sqlite3.NotSupportedError
    )


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def run_many(self, sql: str, rows: Sequence[Sequence]) -> None:
        if rows:
            self._conn.executemany(sql, rows)


class SQLiteAuditStore(SQLAuditStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._conn = self._connect(busy_timeout_s)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupt the file;
        # a crashed process (kill -9) loses nothing that was committed.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._read_conn = self._connect(busy_timeout_s)
        # Up to date (the usual start) needs no write lock, so a server still starts while
        # another process holds the file's lock; the writer spills until it is released.
        if not self._up_to_date():
            with self._transaction(write=True) as tx:
                self._migrate_in(tx)

    def _up_to_date(self) -> bool:
        try:
            return self.migration_versions() == list(range(1, len(schema.MIGRATIONS) + 1))
        except AuditStoreUnavailable:
            return False  # no schema_migrations table yet

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, timeout=busy_timeout_s, isolation_level=None)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_SQLiteTx]:
        lock, conn = (self._write_lock, self._conn) if write else (self._read_lock, self._read_conn)
        with lock:
            try:
                # IMMEDIATE takes the write lock up front, so two processes sharing the file
                # cannot both read a row as free and then both lease it.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise AuditStoreUnavailable(f"audit database {self.path}: {exc}") from exc
            try:
                yield _SQLiteTx(conn)
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if _unavailable(exc):
                    raise AuditStoreUnavailable(f"audit database {self.path}: {exc}") from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise AuditStoreUnavailable(f"audit database {self.path}: {exc}") from exc

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            cursor = self._read_conn.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._read_conn.close()
            self._conn.close()
