"""Real databases for the audit tests: a fresh SQLite file, or a fresh schema in the shared
PostgreSQL (dropped afterwards, so concurrent runs never collide), and a TCP proxy in front of
PostgreSQL that a test can stop and start to take "the database" away without touching the
server everyone shares.

Fixtures: `audit_store` (parametrised: sqlite and postgresql), `pg_url` (a schema-scoped URL).
Import their functions into a test module, as with tests/image_host.py:
`from tests.audit_support import audit_store_fixture, pg_url_fixture  # noqa: F401`.

PostgreSQL is found at $MODERATION_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test; set it to `skip` to skip the PostgreSQL cases."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from server.audit.writer import open_store

PG_BASE_URL = os.environ.get("MODERATION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def with_schema(base_url: str, schema: str, host: str | None = None, port: int | None = None) -> str:
    """base_url with ?schema=, optionally pointed at another host:port (the proxy)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base_url)
    if port is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        parts = parts._replace(netloc=(userinfo + "@" if userinfo else "") + f"{host}:{port}")
    query = (parts.query + "&" if parts.query else "") + f"schema={schema}"
    return urlunsplit(parts._replace(query=query))


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A unique schema name, dropped with everything in it on exit."""
    if PG_BASE_URL == "skip":
        pytest.skip("MODERATION_TEST_POSTGRES_URL=skip")
    schema = f"audit_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        yield schema
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(name="pg_url")
def pg_url_fixture() -> Iterator[str]:
    with pg_schema() as schema:
        yield with_schema(PG_BASE_URL, schema)


@pytest.fixture(name="audit_store", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def audit_store_fixture(request, tmp_path):
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
        yield store
        store.close()
        return
    with pg_schema() as schema:
        store = open_store(with_schema(PG_BASE_URL, schema))
        yield store
        store.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. stop() closes the listener and cuts every open
    connection (the client sees the server go away); start() listens again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = False

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running = True
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._running = False
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._running and listener is self._listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if not self._running:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
