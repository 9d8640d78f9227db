"""The shared audit store: PostgreSQL, for several replicas writing to and reading from one place.

Selected by a `postgresql://` URL (libpq's URI syntax). One extra query parameter, `schema`,
puts the tables in that schema (created if missing), so the audit tables can share a database.

The server must keep serving while the database is away, so nothing connects at construction:
connections are made on first use, migrations run on the first successful one, and a broken
connection is dropped and replaced on the next call. Every database failure surfaces as
AuditStoreUnavailable, which the writer answers by spilling to its local file."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from server.audit.sql_store import SQLAuditStore
from server.errors import AuditStoreUnavailable

# Serialises migrations of replicas that start together; any constant works, this one is
# int.from_bytes(b"moderatn") % 2**63.
_MIGRATION_LOCK_KEY = 7885354669431239790


def split_url(url: str) -> tuple[str, str]:
    """'postgresql://h/db?schema=s&sslmode=x' -> ('postgresql://h/db?sslmode=x', 's')."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class _PgTx:
    def __init__(self, cursor: psycopg.Cursor):
        self._cursor = cursor

    def query(self, text: str, params: Sequence = ()) -> list[tuple]:
        self._cursor.execute(text.replace("?", "%s"), tuple(params))
        return self._cursor.fetchall()

    def run(self, text: str, params: Sequence = ()) -> int:
        self._cursor.execute(text.replace("?", "%s"), tuple(params))
        return self._cursor.rowcount

    def run_many(self, text: str, rows: Sequence[Sequence]) -> None:
        if rows:
            self._cursor.executemany(text.replace("?", "%s"), rows)


class PostgresAuditStore(SQLAuditStore):
    dialect = "postgresql"
    lock_rows = " FOR UPDATE"
    # A second reviewer's query passes over the rows the first one is leasing right now,
    # instead of waiting for them and then finding them leased.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float = 10.0, pool_size: int = 4):
        self.url = url
        self._conninfo, self.schema = split_url(url)
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            # A peer that vanished without a reset (network partition) would otherwise hold a
            # query for the kernel's retransmission timeout, ~15 minutes.
            "tcp_user_timeout": int(1000 * statement_timeout_s),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "autocommit": True,
        }
        self._statement_timeout_ms = int(1000 * statement_timeout_s)
        self._pool_size = pool_size
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._migrated = False
        self._closed = False

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self._conninfo, **self._connect_kwargs)
        try:
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self._statement_timeout_ms)))
            if self.schema:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._closed:
                raise AuditStoreUnavailable("audit store is closed")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._connect()
            if not self._migrated:
                self._migrate(conn)
            yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn is not None:
                conn.close()
            raise AuditStoreUnavailable(f"audit database: {exc}".strip()) from exc
        except BaseException:
            if conn is not None and (conn.broken or conn.closed):
                conn.close()
                conn = None
            if conn is not None:
                self._give_back(conn)
            raise
        else:
            if conn.broken or conn.closed:
                conn.close()
            else:
                self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            if self.schema:
                cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            self._migrate_in(_PgTx(cursor))
        self._migrated = True

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_PgTx]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield _PgTx(cursor)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
