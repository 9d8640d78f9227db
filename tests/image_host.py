"""Real HTTP servers on loopback for tests: an image host with programmable routes, and a trap
listener that records every connection made to it (to prove that none was).

Fixtures `image_host` and `trap`: import their functions into a test module (`from
tests.image_host import image_host_fixture, trap_fixture  # noqa: F401`; the functions are named
apart from the fixtures so test parameters do not shadow the import), or use the classes
directly as context managers:

    with ImageHost() as host:
        host.add("/cat.jpg", jpeg_bytes)
        url = host.url("/cat.jpg")       # http://127.0.0.1:<port>/cat.jpg
        ...
        assert host.hits("/cat.jpg") == 1

Both run in daemon threads, independent of any event loop, so they serve asyncio code, gRPC
servers and plain clients alike."""

from __future__ import annotations

import functools
import http.server
import select
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

import pytest

from loadtest.image_host import LoopbackHTTPHost

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]

_CHUNK = 64 * 1024


@functools.lru_cache(maxsize=4)
def gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, built in pieces so that the decoded size is never in
    memory; cached because 200 MB takes most of a second to compress."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = []
    left = size
    while left > 0:
        piece = zeros if left >= len(zeros) else zeros[:left]
        parts.append(compressor.compress(piece))
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts)


@dataclass(frozen=True)
class _Route:
    handler: Handler


class ImageHost(LoopbackHTTPHost):
    """An HTTP/1.1 server on an ephemeral loopback port. Unregistered paths answer 404.
    Routes are keyed by path (the query string is ignored for routing and counting)."""

    thread_name = "image-host"

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self._routes: dict[str, _Route] = {}
        self._hits: Counter[str] = Counter()
        self._headers: dict[str, Message] = {}

    def _on_get(self, req: http.server.BaseHTTPRequestHandler) -> None:
        self._dispatch(req)

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- what was asked

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits[path]

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self._hits.values())

    def last_headers(self, path: str) -> Message | None:
        """The request headers of the latest request for `path`."""
        with self._lock:
            return self._headers.get(path)

    # --- routes

    def add_route(self, path: str, handler: Handler) -> str:
        """A custom handler, called with the BaseHTTPRequestHandler. Returns the URL."""
        with self._lock:
            self._routes[path] = _Route(handler)
        return self.url(path)

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "image/jpeg",
        status: int = 200,
        headers: dict[str, str] | None = None,
        gzip: bool = False,
    ) -> str:
        """Serves `body` with Content-Length; gzip=True sends it gzip-encoded."""
        payload = body
        extra = dict(headers or {})
        if gzip:
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
            payload = compressor.compress(body) + compressor.flush()
            extra["Content-Encoding"] = "gzip"

        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            _send_head(req, status, content_type, len(payload), extra)
            req.wfile.write(payload)

        return self.add_route(path, handler)

    def add_html_as_jpeg(self, path: str) -> str:
        """An HTML page that claims to be a JPEG."""
        return self.add(path, b"<!doctype html><html><body>not an image</body></html>", "image/jpeg")

    def add_redirect(self, path: str, location: str, status: int = 302, headers: dict[str, str] | None = None) -> str:
        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            _send_head(req, status, "text/plain", 0, {"Location": location, **(headers or {})})

        return self.add_route(path, handler)

    def add_slow(
        self,
        path: str,
        body: bytes,
        header_delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_size: int = 1024,
        content_type: str = "image/jpeg",
    ) -> str:
        """Waits header_delay_s before the status line, then sends the body in chunk_size
        pieces with chunk_delay_s between them."""

        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            if self._stopping.wait(header_delay_s):
                return
            _send_head(req, 200, content_type, len(body), {})
            for start in range(0, len(body), chunk_size):
                if start and self._stopping.wait(chunk_delay_s):
                    return
                req.wfile.write(body[start : start + chunk_size])
                req.wfile.flush()

        return self.add_route(path, handler)

    def add_huge(
        self,
        path: str,
        size: int,
        framing: str = "length",
        prefix: bytes = b"\xff\xd8\xff\xe0",
        content_type: str = "image/jpeg",
    ) -> str:
        """Streams `size` bytes (`prefix`, then zeros) without ever holding them. framing:
        "length" (Content-Length), "close" (no length, ends at connection close) or
        "chunked" (Transfer-Encoding: chunked)."""
        if framing not in ("length", "close", "chunked"):
            raise ValueError(f"unknown framing {framing!r}")

        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            req.send_response(200)
            req.send_header("Content-Type", content_type)
            if framing == "length":
                req.send_header("Content-Length", str(size))
            elif framing == "chunked":
                req.send_header("Transfer-Encoding", "chunked")
            else:
                req.send_header("Connection", "close")
                req.close_connection = True
            req.end_headers()
            zeros = bytes(_CHUNK)
            sent = 0
            while sent < size and not self._stopping.is_set():
                piece = zeros[: min(_CHUNK, size - sent)]
                if sent == 0:
                    piece = (prefix + piece[len(prefix) :])[: len(piece)]
                if framing == "chunked":
                    req.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    req.wfile.write(piece)
                sent += len(piece)
            if framing == "chunked":
                req.wfile.write(b"0\r\n\r\n")

        return self.add_route(path, handler)

    def add_gzip_bomb(self, path: str, decoded_size: int = 200 * 1024 * 1024, content_type: str = "image/jpeg") -> str:
        """A small gzip body (about 1/1000 of decoded_size) of decoded_size zeros, sent with
        Content-Encoding: gzip and the compressed Content-Length."""
        payload = gzip_of_zeros(decoded_size)

        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            _send_head(req, 200, content_type, len(payload), {"Content-Encoding": "gzip"})
            req.wfile.write(payload)

        return self.add_route(path, handler)

    # --- dispatch

    def _dispatch(self, req: http.server.BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        with self._lock:
            self._hits[path] += 1
            self._headers[path] = req.headers
            route = self._routes.get(path)
        try:
            if route is None:
                body = b"not found\n"
                _send_head(req, 404, "text/plain", len(body), {})
                req.wfile.write(body)
            else:
                route.handler(req)
        except (BrokenPipeError, ConnectionResetError):
            req.close_connection = True


def _send_head(
    req: http.server.BaseHTTPRequestHandler, status: int, content_type: str, length: int, headers: dict[str, str]
) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(length))
    for name, value in headers.items():
        req.send_header(name, value)
    req.end_headers()


class TrapListener:
    """Listens on the same ephemeral port on 127.0.0.1 and, where the machine has it, ::1, and
    records every connection it accepts (then closes it). `accepted()` also drains the accept
    queue first, so a connection completed by the kernel but not yet accepted still counts."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._peers: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = 0
        self.has_ipv6 = False

    def start(self) -> TrapListener:
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            v6 = None
            if socket.has_ipv6:
                v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    v6.bind(("::1", port))
                except OSError as exc:
                    v6.close()
                    v6 = None
                    if exc.errno == getattr(socket, "EADDRINUSE", 98):
                        v4.close()
                        continue  # another process holds that port on ::1; pick another
            break
        else:
            raise RuntimeError("could not bind a trap port on both loopbacks")
        self.port = port
        self.has_ipv6 = v6 is not None
        self._sockets = [s for s in (v4, v6) if s is not None]
        for sock in self._sockets:
            sock.listen(64)
            sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"trap-{port}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select(self._sockets, [], [], 0.05)
            if ready:
                self._drain()

    def _drain(self) -> None:
        with self._lock:
            for sock in self._sockets:
                while True:
                    try:
                        conn, peer = sock.accept()
                    except (BlockingIOError, OSError):
                        break
                    self._peers.append(peer[:2])
                    conn.close()

    def accepted(self, settle_s: float = 0.05) -> list[tuple[str, int]]:
        """Peers of every connection made so far."""
        time.sleep(settle_s)
        self._drain()
        with self._lock:
            return list(self._peers)

    def url(self, host: str = "127.0.0.1", path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> TrapListener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(name="image_host")
def image_host_fixture() -> Iterator[ImageHost]:
    """A started ImageHost on 127.0.0.1 with no routes (everything 404s until added)."""
    with ImageHost() as host:
        yield host


@pytest.fixture(name="trap")
def trap_fixture() -> Iterator[TrapListener]:
    """A started TrapListener on 127.0.0.1 (and ::1, same port, when available)."""
    with TrapListener() as listener:
        yield listener
