"""Asynchronous, SSRF-safe image fetcher.

Every hop (the URL and each redirect) is checked against the destination policy on the
address that will actually be connected to: IP literals are checked before the request, host
names inside the connector's resolver, which hands aiohttp only the addresses it vetted, so a
DNS answer that changes between check and connect (rebinding) cannot reach a refused address.
Bodies are streamed and counted after decompression, so a compression bomb stops at the limit."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import cast

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from server.config import FetchConfig
from server.errors import ImageError, ImageErrorCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


# --- the address classifier -------------------------------------------------------------------

_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_ULA = ipaddress.IPv6Network("fc00::/7")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215's local-use NAT64 prefix: where the IPv4 address sits depends on the operator's
# prefix length, so it cannot be unpacked reliably and is refused whole.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, with the name of the form. These forms
    reach the IPv4 host through the kernel (mapped) or a translator/relay (NAT64, 6to4), so
    the IPv4 address is what has to be judged."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped form", ip.ipv4_mapped
    if ip in _IPV4_TRANSLATED:
        return "an IPv4-translated form", low32
    if ip in _NAT64:
        return "a NAT64 form", low32
    if ip.sixtofour is not None:
        return "a 6to4 form", ip.sixtofour
    # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones.
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "an IPv4-compatible form", low32
    return None


def deny_reason(ip: IPAddress) -> str | None:
    """Why the deny rules refuse this address ("a loopback address", ...), or None when no
    rule matches. A pure function of the address: the allow-list is applied on top of it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            inner = deny_reason(v4)
            return None if inner is None else f"{form} of {v4}, {inner}"
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        if ip.teredo is not None:
            return "a Teredo tunnelling address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == _BROADCAST:
            return "the broadcast address"
        if ip in _SHARED:
            return "a shared (carrier-grade NAT) address"
        if any(ip in net for net in _RFC1918):
            return "a private address"
    else:
        if ip.is_site_local:
            return "a site-local address"
        if ip in _ULA:
            return "a unique-local (private) address"
    if ip.is_reserved:
        return "a reserved address"
    # Catches the special-purpose blocks the rules above do not name (documentation,
    # benchmarking, 0.0.0.0/8, ...): only globally routable addresses are fetched from.
    if not ip.is_global:
        return "a special-purpose (not globally routable) address"
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


class DestinationPolicy:
    """Deny rules plus the allow-list. Raises ValueError for a malformed allow entry, so a bad
    configuration fails at start-up rather than refusing (or allowing) silently."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._networks: list[IPNetwork] = []
        self._ip_ports: set[tuple[IPAddress, int]] = set()
        self._name_ports: set[tuple[str, int]] = set()
        for entry in allow:
            self._add(entry.strip())

    def _add(self, entry: str) -> None:
        if "/" in entry:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ValueError(f"allow entry {entry!r} is not a valid CIDR: {exc}") from None
            return
        if entry.startswith("["):
            host, sep, port_text = entry[1:].partition("]:")
        else:
            host, sep, port_text = entry.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"allow entry {entry!r} is neither a CIDR nor host:port")
        port = int(port_text)
        ip = _parse_ip(host)
        if ip is not None:
            self._ip_ports.add((ip, port))
        elif entry.startswith("["):
            raise ValueError(f"allow entry {entry!r}: {host!r} is not an IPv6 address")
        else:
            self._name_ports.add((_normalise_host(host), port))

    def allows_name(self, host: str, port: int) -> bool:
        """Whether a host:port entry names this host, which then allows whatever it resolves to
        (the point of naming an internal image host)."""
        return (_normalise_host(host), port) in self._name_ports

    def _allows_ip(self, ip: IPAddress, port: int) -> bool:
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                candidates.append(ipaddress.IPv6Address(ip.compressed.split("%", 1)[0]))
            if ip.ipv4_mapped is not None:
                # The kernel connects ::ffff:a.b.c.d to a.b.c.d, so IPv4 entries apply to it.
                candidates.append(ip.ipv4_mapped)
        for candidate in candidates:
            if (candidate, port) in self._ip_ports:
                return True
            if any(candidate.version == net.version and candidate in net for net in self._networks):
                return True
        return False

    def refusal(self, host: str, port: int, ip: IPAddress, *, resolved: bool) -> str | None:
        """The message for refusing to connect to `ip` for URL host `host` and `port`, or None
        when the connection is allowed."""
        if self.allows_name(host, port) or self._allows_ip(ip, port):
            return None
        reason = deny_reason(ip)
        if reason is None:
            return None
        if resolved:
            return f"{host} resolves to {ip}, {reason}"
        return f"{host} is {reason}"

    def check_literal(self, host: str, port: int) -> str | None:
        """Checks a URL host that is not a DNS name; aiohttp connects to IP literals without
        asking the resolver, so this is their only check. Returns the refusal message, or None
        when `host` is a name (left to the resolver) or an allowed address."""
        ip = _parse_ip(host)
        if ip is not None:
            return self.refusal(host, port, ip, resolved=False)
        try:
            # inet_aton accepts the legacy forms (2130706433, 0x7f.1, 017700000001, 127.1) that
            # getaddrinfo would also turn into an address; refusing them outright means no
            # reading of them can disagree with the one that is checked.
            legacy = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            legacy = None
        if legacy is not None:
            reason = deny_reason(legacy)
            what = f"{legacy}, {reason}" if reason else str(legacy)
            return f"{host} is a non-canonical numeric form of {what}; only dotted-quad IPv4 is accepted"
        # Mirrors aiohttp's own test for "this is an IP literal, skip DNS": anything it would
        # treat as a literal that did not parse above must not reach a socket.
        if ":" in host or host.replace(".", "").isdigit():
            return f"{host} is not a valid IP address"
        return None


# --- the resolver that vets ---------------------------------------------------------------------

_AI_ADDRCONFIG = socket.AI_ADDRCONFIG
if hasattr(socket, "AI_MASK"):
    _AI_ADDRCONFIG &= socket.AI_MASK


class VettingResolver(AbstractResolver):
    """Resolves with getaddrinfo and refuses the name if ANY answer is denied (connecting only
    to the allowed ones would let a hostile zone steer traffic by answer order). aiohttp
    connects to exactly the addresses returned here, and the connector is built without a DNS
    cache, so no unvetted answer is ever used."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family, flags=_AI_ADDRCONFIG)
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            if fam == socket.AF_INET6:
                if len(sockaddr) < 4:
                    continue
                address, sock_port = sockaddr[0], sockaddr[1]
                if sockaddr[3]:
                    # A link-local answer needs its zone to be connectable.
                    address, port_text = await loop.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
                    sock_port = int(port_text)
            elif fam == socket.AF_INET:
                # An AF_INET answer is (host, port); the type covers every family's.
                address, sock_port = cast(tuple[str, int], sockaddr)
            else:
                continue
            ip = ipaddress.ip_address(address)
            refusal = self._policy.refusal(host, port, ip, resolved=True)
            if refusal is not None:
                raise ImageError(ImageErrorCode.DESTINATION_NOT_ALLOWED, refusal)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=sock_port,
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError(f"{host} has no usable address")
        return results

    async def close(self) -> None:
        pass


# --- the fetcher ---------------------------------------------------------------------------------


class Fetcher:
    def __init__(self, config: FetchConfig) -> None:
        self._config = config
        self._policy = DestinationPolicy(config.allow)
        self._session: aiohttp.ClientSession | None = None

    @property
    def policy(self) -> DestinationPolicy:
        return self._policy

    async def start(self) -> None:
        if self._session is not None:
            return
        cfg = self._config
        connector = aiohttp.TCPConnector(
            resolver=VettingResolver(self._policy),
            use_dns_cache=False,
            limit=cfg.max_connections,
            limit_per_host=cfg.max_connections_per_host,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
            headers={hdrs.USER_AGENT: cfg.user_agent, hdrs.ACCEPT: "image/*, */*;q=0.5"},
            # The whole transfer is bounded by fetch()'s own deadline across all hops;
            # sock_connect bounds each connection attempt, not the wait for a pooled one.
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=cfg.connect_timeout_s),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def fetch(self, url: str, timeout_s: float | None = None) -> bytes:
        """The decoded body of `url`. Raises ImageError, and nothing else, for anything that
        goes wrong with this image; RuntimeError only when start() was not awaited."""
        session = self._session
        if session is None:
            raise RuntimeError("Fetcher.start() must be awaited before fetch()")
        budget = self._config.timeout_s if timeout_s is None else timeout_s
        if budget <= 0:
            raise ImageError(ImageErrorCode.FETCH_TIMEOUT, "no time left to fetch the image")
        try:
            async with asyncio.timeout(budget):
                return await self._fetch(session, url)
        except ImageError:
            raise
        except TimeoutError:
            raise ImageError(ImageErrorCode.FETCH_TIMEOUT, f"no complete answer within {budget:.3g} s") from None
        except Exception as exc:  # the contract is ImageError only; this is the last resort
            raise _translate(exc, None) from exc

    async def _fetch(self, session: aiohttp.ClientSession, url: str) -> bytes:
        try:
            current = URL(url)
        except (ValueError, TypeError) as exc:
            raise ImageError(ImageErrorCode.FETCH_FAILED, f"invalid URL: {exc}") from None
        max_redirects = self._config.max_redirects
        for hop in range(max_redirects + 1):
            self._check_destination(current)
            try:
                async with session.get(current, allow_redirects=False) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        location = resp.headers.get(hdrs.LOCATION)
                        if not location:
                            raise ImageError(
                                ImageErrorCode.FETCH_FAILED, f"origin answered {resp.status} without a Location header"
                            )
                        if hop == max_redirects:
                            raise ImageError(
                                ImageErrorCode.FETCH_FAILED, f"too many redirects (more than {max_redirects})"
                            )
                        try:
                            current = current.join(URL(location)).with_fragment(None)
                        except (ValueError, TypeError) as exc:
                            raise ImageError(
                                ImageErrorCode.FETCH_FAILED, f"invalid redirect Location {location!r}: {exc}"
                            ) from None
                        continue
                    if not 200 <= resp.status < 300:
                        raise ImageError(
                            ImageErrorCode.HTTP_ERROR,
                            f"origin answered {resp.status} {resp.reason or ''}".rstrip(),
                            http_status=resp.status,
                        )
                    return await self._read_body(resp)
            except (ImageError, TimeoutError):
                raise
            except Exception as exc:
                raise _translate(exc, current) from exc
        raise AssertionError("unreachable: the loop returns or raises")

    def _check_destination(self, url: URL) -> None:
        if url.scheme not in ALLOWED_SCHEMES:
            raise ImageError(
                ImageErrorCode.DESTINATION_NOT_ALLOWED, f"scheme {url.scheme!r} is not allowed (only http and https)"
            )
        host = url.raw_host
        if not host:
            raise ImageError(ImageErrorCode.DESTINATION_NOT_ALLOWED, f"URL {url} has no host")
        port = url.port
        if port is None:
            raise ImageError(ImageErrorCode.FETCH_FAILED, f"URL {url} has no port")
        refusal = self._policy.check_literal(host, port)
        if refusal is not None:
            raise ImageError(ImageErrorCode.DESTINATION_NOT_ALLOWED, refusal)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._config.max_bytes
        encoding = resp.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        decoded = encoding not in ("", "identity")
        length = resp.content_length
        # Only an unencoded length says how big the decoded body is; for an encoded one the
        # streaming count below is the check.
        if not decoded and length is not None and length > limit:
            resp.close()
            raise ImageError(ImageErrorCode.TOO_LARGE, f"Content-Length {length} exceeds the limit of {limit} bytes")
        body = bytearray()
        # aiohttp decompresses while streaming, in bounded pieces, so these are decoded bytes
        # and a bomb is cut off after at most one piece past the limit.
        async for chunk in resp.content.iter_any():
            body += chunk
            if len(body) > limit:
                resp.close()
                after = f" after {encoding} decoding" if decoded else ""
                raise ImageError(ImageErrorCode.TOO_LARGE, f"body exceeds the limit of {limit} bytes{after}")
        return bytes(body)


def _translate(exc: BaseException, url: URL | None) -> ImageError:
    """Maps a transport-level failure to FETCH_FAILED (or the ImageError it carries)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        # aiohttp may wrap what the resolver raised; the refusal inside is the real answer.
        if isinstance(cause, ImageError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    where = f"{url.raw_host}:{url.port}" if url is not None else "the origin"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        message = f"TLS certificate of {where} rejected: {exc.certificate_error}"
    elif isinstance(exc, aiohttp.ClientSSLError):
        message = f"TLS handshake with {where} failed: {exc.os_error}"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        message = f"cannot resolve {exc.host}: {exc.os_error.strerror or exc.os_error}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        message = f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        message = f"{where} closed the connection before a complete answer"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message = f"malformed or truncated response body from {where}: {exc}"
    elif isinstance(exc, aiohttp.InvalidURL):
        message = f"invalid URL: {exc}"
    elif isinstance(exc, aiohttp.ClientResponseError):
        message = f"malformed response from {where}: {exc.message}"
    elif isinstance(exc, aiohttp.ClientError):
        message = f"request to {where} failed: {type(exc).__name__}: {exc}"
    elif isinstance(exc, (ValueError, UnicodeError)):
        message = f"invalid URL: {exc}"
    elif isinstance(exc, OSError):
        message = f"network error talking to {where}: {exc}"
    else:
        message = f"unexpected error fetching from {where}: {type(exc).__name__}: {exc}"
    return ImageError(ImageErrorCode.FETCH_FAILED, message)
