"""A local HTTP image origin for URL-mode load: serves an ImageSet's files on loopback.

    with ImageHost(images, port=8765, slow_delay_s=2.0) as host:
        host.url("photo-000.jpg")        # http://127.0.0.1:8765/photo-000.jpg
        host.url("photo-000.jpg", slow=True)   # same bytes after a 2 s wait
        host.allow_entry                  # "127.0.0.1:8765", for the server's --fetch-allow

Threaded HTTP/1.1 with keep-alive, so the service's connection pool is exercised the way a
real CDN exercises it. tests/image_host.py builds its programmable test origin on the same
LoopbackHTTPHost; this one is built for throughput and for running beside a benchmark."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from typing import Self
from urllib.parse import unquote, urlsplit

from loadtest.images import ImageSet

SLOW_PREFIX = "/slow/"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # A slow response must not hold up stop(); its client gives up on its own.
    block_on_close = False
    # The fetcher opens up to max_connections_per_host at once; the default backlog of 5
    # would turn a burst of connects into SYN retries and a 1 s latency artefact.
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client hanging up mid-body (a fetch timeout, or the point of a test route) is expected.
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def check_loopback(host: str) -> None:
    """Refuses anything but a loopback address: load must never leave the machine."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"image host must bind a loopback IP address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"image host must bind a loopback address, got {host!r}")


class LoopbackHTTPHost:
    """A threaded HTTP/1.1 keep-alive server on a loopback address, in a daemon thread, until
    stop(). Subclasses answer requests in _on_get (and _on_head; by default HEAD is 501)."""

    thread_name = "http-host"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        check_loopback(host)
        self.host = host.strip("[]")
        self.requested_port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _on_get(self, req: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def _on_head(self, req: http.server.BaseHTTPRequestHandler) -> None:
        req.send_error(501)

    # --- lifecycle

    def start(self) -> Self:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body go out in two writes; with Nagle on, the body would wait for the
            # client's delayed ACK, adding ~40 ms to every fetch.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                owner._on_get(self)

            def do_HEAD(self) -> None:
                owner._on_head(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.requested_port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def _netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self._netloc}"

    @property
    def allow_entry(self) -> str:
        """The server's --fetch-allow entry (FetchConfig.allow) that admits exactly this host."""
        return self._netloc


class ImageHost(LoopbackHTTPHost):
    """Serves `images` by file name: GET /<name>, and GET /slow/<name> for the same bytes after
    `slow_delay_s`. Other paths answer 404. port=0 picks a free port."""

    thread_name = "loadtest-image-host"

    def __init__(self, images: ImageSet, *, host: str = "127.0.0.1", port: int = 0, slow_delay_s: float = 0.0) -> None:
        super().__init__(host, port)
        self.slow_delay_s = slow_delay_s
        self._files = {f.name: (images.data(f.name), f.content_type) for f in images.files}
        self._requests = self._slow_requests = self._not_found = self._bytes_sent = 0

    def _on_get(self, req: http.server.BaseHTTPRequestHandler) -> None:
        self._serve(req, body=True)

    def _on_head(self, req: http.server.BaseHTTPRequestHandler) -> None:
        self._serve(req, body=False)

    def url(self, name: str, *, slow: bool = False) -> str:
        return f"http://{self._netloc}{SLOW_PREFIX if slow else '/'}{name}"

    # --- counters

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self._requests,
                "slow_requests": self._slow_requests,
                "not_found": self._not_found,
                "bytes_sent": self._bytes_sent,
            }

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    # --- serving

    def _serve(self, req: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(req.path).path)
        slow = path.startswith(SLOW_PREFIX)
        name = path[len(SLOW_PREFIX) :] if slow else path[1:]
        entry = self._files.get(name)
        with self._lock:
            self._requests += 1
            self._slow_requests += slow
            self._not_found += entry is None
        try:
            # Event.wait rather than sleep, so stop() does not wait out every slow request.
            if slow and self.slow_delay_s > 0 and self._stopping.wait(self.slow_delay_s):
                req.close_connection = True
                return
            data, content_type = entry if entry is not None else (b"not found\n", "text/plain")
            req.send_response(200 if entry is not None else 404)
            req.send_header("Content-Type", content_type)
            req.send_header("Content-Length", str(len(data)))
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            if body:
                req.wfile.write(data)
                with self._lock:
                    self._bytes_sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            req.close_connection = True
