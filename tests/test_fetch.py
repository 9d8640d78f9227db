"""The fetcher against real HTTP servers on loopback. Loopback is denied by default, so each
test admits exactly the image host's port; every refusal test also proves, with a trap
listener, that no connection was made. No test connects to anything off this machine."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from server.errors import ImageError, ImageErrorCode
from server.pipeline.fetch import DestinationPolicy, FetchConfig, Fetcher, deny_reason
from tests.image_host import ImageHost, TrapListener, image_host_fixture, trap_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(20)

JPEG = b"\xff\xd8\xff\xe0" + os.urandom(300_000)


def _config(*allow: str, **overrides: object) -> FetchConfig:
    fields: dict[str, object] = {"timeout_s": 5.0, "connect_timeout_s": 1.0, "allow": allow}
    fields.update(overrides)
    return FetchConfig(**fields)  # type: ignore[arg-type]


def fetch(url: str, config: FetchConfig, timeout_s: float | None = None) -> bytes:
    async def run() -> bytes:
        fetcher = Fetcher(config)
        await fetcher.start()
        try:
            return await fetcher.fetch(url, timeout_s)
        finally:
            await fetcher.close()

    return asyncio.run(run())


def fetch_error(url: str, config: FetchConfig, timeout_s: float | None = None) -> ImageError:
    with pytest.raises(ImageError) as info:
        fetch(url, config, timeout_s)
    return info.value


# --- success ---------------------------------------------------------------------------------------


def test_good_image_is_fetched(image_host: ImageHost) -> None:
    url = image_host.add("/cat.jpg", JPEG)
    assert fetch(url, _config(image_host.allow_entry)) == JPEG
    assert image_host.hits("/cat.jpg") == 1
    headers = image_host.last_headers("/cat.jpg")
    assert headers is not None
    assert headers["User-Agent"] == "moderation-service/0.1"
    assert headers["Cookie"] is None


def test_gzip_encoded_body_is_decoded(image_host: ImageHost) -> None:
    url = image_host.add("/zipped.jpg", JPEG, gzip=True)
    assert fetch(url, _config(image_host.allow_entry)) == JPEG


def test_content_type_is_not_trusted(image_host: ImageHost) -> None:
    # The decoder sniffs magic bytes; the fetcher hands over whatever came.
    url = image_host.add_html_as_jpeg("/page.jpg")
    assert fetch(url, _config(image_host.allow_entry)).startswith(b"<!doctype html>")


def test_body_of_exactly_max_bytes_is_accepted(image_host: ImageHost) -> None:
    url = image_host.add("/exact.jpg", JPEG[:100_000])
    assert fetch(url, _config(image_host.allow_entry, max_bytes=100_000)) == JPEG[:100_000]


def test_concurrent_fetches_share_one_pool(image_host: ImageHost) -> None:
    urls = [image_host.add(f"/img{i}.jpg", JPEG[: 1000 + i]) for i in range(40)]

    async def run() -> list[bytes]:
        fetcher = Fetcher(_config(image_host.allow_entry, max_connections_per_host=4))
        await fetcher.start()
        try:
            return await asyncio.gather(*(fetcher.fetch(u) for u in urls))
        finally:
            await fetcher.close()

    assert asyncio.run(run()) == [JPEG[: 1000 + i] for i in range(40)]


def test_cidr_allow_entry_admits_any_port(image_host: ImageHost) -> None:
    url = image_host.add("/cat.jpg", JPEG)
    assert fetch(url, _config("127.0.0.0/8")) == JPEG


def test_named_allow_entry_admits_what_the_name_resolves_to(image_host: ImageHost) -> None:
    image_host.add("/cat.jpg", JPEG)
    url = f"http://localhost:{image_host.port}/cat.jpg"
    assert fetch(url, _config(f"localhost:{image_host.port}")) == JPEG


# --- origin errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (403, "Forbidden"), (503, "Service Unavailable")])
def test_non_2xx_is_http_error(image_host: ImageHost, status: int, reason: str) -> None:
    url = image_host.url("/missing.jpg")
    if status != 404:
        image_host.add("/missing.jpg", b"no", "text/plain", status=status)
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.HTTP_ERROR
    assert err.http_status == status
    assert err.message == f"origin answered {status} {reason}"


def test_slow_headers_time_out(image_host: ImageHost) -> None:
    url = image_host.add_slow("/slow.jpg", JPEG, header_delay_s=10)
    started = time.monotonic()
    err = fetch_error(url, _config(image_host.allow_entry), timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert err.code is ImageErrorCode.FETCH_TIMEOUT
    assert 0.4 < elapsed < 1.5


def test_slow_body_times_out_on_the_whole_transfer(image_host: ImageHost) -> None:
    # Every chunk arrives well within any per-read timeout; only the whole-transfer one fires.
    url = image_host.add_slow("/drip.jpg", JPEG[:50_000], chunk_delay_s=0.05, chunk_size=500)
    started = time.monotonic()
    err = fetch_error(url, _config(image_host.allow_entry, timeout_s=0.5))
    assert err.code is ImageErrorCode.FETCH_TIMEOUT
    assert time.monotonic() - started < 1.5


def test_no_time_left_fails_without_a_request(image_host: ImageHost) -> None:
    url = image_host.add("/cat.jpg", JPEG)
    err = fetch_error(url, _config(image_host.allow_entry), timeout_s=0.0)
    assert err.code is ImageErrorCode.FETCH_TIMEOUT
    assert image_host.total_hits == 0


@pytest.mark.parametrize("framing", ["length", "close", "chunked"])
def test_body_over_max_bytes_is_too_large(image_host: ImageHost, framing: str) -> None:
    url = image_host.add_huge("/huge.jpg", 200 * 1024 * 1024, framing=framing)
    started = time.monotonic()
    err = fetch_error(url, _config(image_host.allow_entry, max_bytes=1024 * 1024))
    assert err.code is ImageErrorCode.TOO_LARGE
    assert time.monotonic() - started < 3
    if framing == "length":
        assert "Content-Length" in err.message


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples this process's RSS every few milliseconds while the block runs."""

    def __enter__(self) -> _PeakRss:
        self.baseline = _rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read RSS")
def test_gzip_bomb_stops_at_max_bytes_in_little_memory(image_host: ImageHost) -> None:
    url = image_host.add_gzip_bomb("/bomb.jpg", decoded_size=200 * 1024 * 1024)
    with _PeakRss() as rss:
        err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.TOO_LARGE
    assert "gzip" in err.message
    growth = rss.peak - rss.baseline
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_malformed_response_is_fetch_failed(image_host: ImageHost) -> None:
    def garbage(req: object) -> None:
        req.wfile.write(b"this is not HTTP\r\n\r\n")  # type: ignore[attr-defined]
        req.close_connection = True  # type: ignore[attr-defined]

    url = image_host.add_route("/garbage", garbage)
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.FETCH_FAILED


def test_truncated_body_is_fetch_failed(image_host: ImageHost) -> None:
    def truncated(req: object) -> None:
        req.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")  # type: ignore[attr-defined]
        req.close_connection = True  # type: ignore[attr-defined]

    url = image_host.add_route("/truncated", truncated)
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.FETCH_FAILED


@pytest.fixture
def closed_port() -> Iterator[int]:
    # Bound but never listening: connections are refused, and nothing else can take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_connection_refused_is_fetch_failed(closed_port: int) -> None:
    err = fetch_error(f"http://127.0.0.1:{closed_port}/cat.jpg", _config(f"127.0.0.1:{closed_port}"))
    assert err.code is ImageErrorCode.FETCH_FAILED
    assert "cannot connect" in err.message


def test_invalid_url_is_fetch_failed() -> None:
    err = fetch_error("http://[::1/", _config())
    assert err.code is ImageErrorCode.FETCH_FAILED


def test_fetch_before_start_is_a_programming_error() -> None:
    async def run() -> None:
        await Fetcher(_config()).fetch("http://127.0.0.1/")

    with pytest.raises(RuntimeError):
        asyncio.run(run())


# --- redirects ----------------------------------------------------------------------------------------


def _chain(host: ImageHost, length: int, status: int = 302) -> str:
    """/hop<length> -> ... -> /hop1 -> /hop0 (the image); alternates absolute and relative
    Locations. Returns the URL of the first hop."""
    host.add("/hop0", JPEG)
    for i in range(1, length + 1):
        location = host.url(f"/hop{i - 1}") if i % 2 else f"/hop{i - 1}?from={i}"
        host.add_redirect(f"/hop{i}", location, status=status)
    return host.url(f"/hop{length}")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_chain_up_to_max_redirects_is_followed(image_host: ImageHost, status: int) -> None:
    url = _chain(image_host, 3, status)
    assert fetch(url, _config(image_host.allow_entry, max_redirects=3)) == JPEG
    assert [image_host.hits(f"/hop{i}") for i in range(4)] == [1, 1, 1, 1]


def test_one_redirect_too_many_is_fetch_failed(image_host: ImageHost) -> None:
    url = _chain(image_host, 4)
    err = fetch_error(url, _config(image_host.allow_entry, max_redirects=3))
    assert err.code is ImageErrorCode.FETCH_FAILED
    assert "too many redirects" in err.message
    assert image_host.hits("/hop0") == 0


def test_redirect_without_location_is_fetch_failed(image_host: ImageHost) -> None:
    url = image_host.add("/nowhere", b"", "text/plain", status=302)
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.FETCH_FAILED


def test_cookies_are_not_sent(image_host: ImageHost) -> None:
    image_host.add("/cat.jpg", JPEG)
    url = image_host.add_redirect("/login", "/cat.jpg", headers={"Set-Cookie": "session=secret; Path=/"})
    assert fetch(url, _config(image_host.allow_entry)) == JPEG
    headers = image_host.last_headers("/cat.jpg")
    assert headers is not None and headers["Cookie"] is None


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/cat.jpg", "gopher://127.0.0.1:70/"])
def test_redirect_to_other_scheme_is_refused(image_host: ImageHost, location: str) -> None:
    url = image_host.add_redirect("/elsewhere", location)
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.DESTINATION_NOT_ALLOWED
    assert "scheme" in err.message


# --- refused destinations: never a connection ------------------------------------------------------

# How each URL host reaches loopback: by name, by IPv6, by legacy numeric IPv4 forms that
# inet_aton/getaddrinfo accept, by an IPv4-mapped IPv6 literal, and via the unspecified
# address, which Linux connects to the local host.
REFUSED_HOSTS = [
    ("localhost", "resolves to"),
    ("LocalHost", "resolves to"),
    ("[::1]", "loopback"),
    ("[0:0:0:0:0:0:0:1]", "loopback"),
    ("2130706433", "non-canonical"),
    ("0x7f.1", "non-canonical"),
    ("017700000001", "non-canonical"),
    ("127.1", "non-canonical"),
    ("0177.0.0.1", "non-canonical"),
    ("0x7f000001", "non-canonical"),
    ("127.0.0.1.", "not a valid IP"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"),
    # The allowed host, but not the allowed port.
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
]


@pytest.mark.parametrize(("host", "why"), REFUSED_HOSTS)
def test_refused_destination_makes_no_connection(
    image_host: ImageHost, trap: TrapListener, host: str, why: str
) -> None:
    if host.startswith("[") and not trap.has_ipv6:
        pytest.skip("no IPv6 loopback to prove the absence of a connection on")
    err = fetch_error(trap.url(host), _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.DESTINATION_NOT_ALLOWED, err.message
    assert why in err.message
    assert trap.accepted() == []


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost", "[::1]", "2130706433"])
def test_redirect_to_refused_destination_makes_no_connection(
    image_host: ImageHost, trap: TrapListener, target: str
) -> None:
    url = image_host.add_redirect("/bounce", trap.url(target, "/cat.jpg"))
    err = fetch_error(url, _config(image_host.allow_entry))
    assert err.code is ImageErrorCode.DESTINATION_NOT_ALLOWED, err.message
    assert image_host.hits("/bounce") == 1
    assert trap.accepted() == []


def test_trap_records_connections_when_allowed(trap: TrapListener) -> None:
    # Control for the tests above: the trap does see a connection the fetcher makes.
    err = fetch_error(trap.url("127.0.0.1"), _config(f"127.0.0.1:{trap.port}"))
    assert err.code is ImageErrorCode.FETCH_FAILED
    assert len(trap.accepted()) >= 1


# --- the classifier and the allow-list (pure functions: nothing here connects) ------------------------

DENIED = [
    "127.0.0.1",
    "127.255.0.7",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "fec0::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::ffff:0:7f00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "64:ff9b:1::a00:1",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:db8::1",
]

# Public addresses, judged by the classifier only; no test ever connects to them.
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", DENIED)
def test_classifier_denies(address: str) -> None:
    assert deny_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_classifier_allows_public_addresses(address: str) -> None:
    assert deny_reason(ipaddress.ip_address(address)) is None


def test_classifier_names_the_reason() -> None:
    def reason(text: str) -> str | None:
        return deny_reason(ipaddress.ip_address(text))

    assert reason("127.0.0.1") == "a loopback address"
    assert reason("10.1.2.3") == "a private address"
    assert reason("169.254.169.254") == "a link-local address"
    assert reason("100.64.0.1") == "a shared (carrier-grade NAT) address"
    assert reason("::ffff:10.0.0.1") == "an IPv4-mapped form of 10.0.0.1, a private address"
    assert reason("64:ff9b::7f00:1") == "a NAT64 form of 127.0.0.1, a loopback address"


def test_cidr_allow_entries() -> None:
    policy = DestinationPolicy(["127.0.0.0/8", "::1/128", "10.1.0.0/16"])
    for host, port in [("127.0.0.1", 1), ("127.9.9.9", 65535), ("::1", 80), ("10.1.2.3", 443)]:
        assert policy.refusal(host, port, ipaddress.ip_address(host), resolved=False) is None
    assert policy.refusal("10.2.0.1", 80, ipaddress.ip_address("10.2.0.1"), resolved=False) is not None
    # The kernel connects ::ffff:127.0.0.1 to 127.0.0.1, so the IPv4 entry covers it.
    assert policy.refusal("::ffff:7f00:1", 80, ipaddress.ip_address("::ffff:7f00:1"), resolved=False) is None


def test_host_port_allow_entries() -> None:
    policy = DestinationPolicy(["127.0.0.1:8080", "[::1]:9090", "images.internal:443"])
    loop4, loop6, private = (ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.0.0.5"))
    assert policy.refusal("127.0.0.1", 8080, loop4, resolved=False) is None
    assert policy.refusal("127.0.0.1", 8081, loop4, resolved=False) == "127.0.0.1 is a loopback address"
    assert policy.refusal("::1", 9090, loop6, resolved=False) is None
    assert policy.refusal("::1", 8080, loop6, resolved=False) is not None
    # An IP entry matches the resolved address, whatever the name was.
    assert policy.refusal("some.name", 8080, loop4, resolved=True) is None
    # A name entry matches the URL's host name on that port, whatever it resolves to.
    assert policy.refusal("images.internal", 443, private, resolved=True) is None
    assert policy.refusal("IMAGES.INTERNAL.", 443, private, resolved=True) is None
    assert policy.refusal("images.internal", 80, private, resolved=True) == (
        "images.internal resolves to 10.0.0.5, a private address"
    )
    assert policy.refusal("other.internal", 443, private, resolved=True) is not None


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "images.internal", "10.0.0.0/33", "host:0", "host:http", "[nothost]:80", ":80"]
)
def test_malformed_allow_entries_are_rejected(entry: str) -> None:
    with pytest.raises(ValueError):
        DestinationPolicy([entry])


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("134744072", "8.8.8.8"),
    ],
)
def test_legacy_numeric_hosts_are_refused_outright(host: str, canonical: str) -> None:
    message = DestinationPolicy(["0.0.0.0/0"]).check_literal(host, 80)
    assert message is not None and canonical in message


def test_dns_names_are_left_to_the_resolver() -> None:
    assert DestinationPolicy().check_literal("images.example", 443) is None
