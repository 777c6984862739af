"""One webhook delivery attempt: a signed JSON POST turned into a :class:`SendOutcome`.

httpx is the interface (requests, responses, exceptions, pluggable transports) so tests can inject
``respx.MockTransport``; the default transport is a lean aiohttp-backed one because httpx's own
connection pool is an order of magnitude slower at dispatcher concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import math
import re
import socket
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDictProxy
from yarl import URL

__all__ = [
    "AiohttpTransport",
    "BlockedAddressError",
    "DNSError",
    "GuardedResolver",
    "Network",
    "SendOutcome",
    "Sender",
    "TLSError",
    "blocked_reason",
    "check_destination",
    "literal_address",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
# Headers we always set ourselves; aiohttp must not add its defaults (or an Accept-Encoding) on top.
_SKIP_AUTO_HEADERS = ("User-Agent", "Content-Type", "Accept", "Accept-Encoding")
# Slack on top of the transport's own timeout before the sender gives up on it regardless.
_BACKSTOP_MARGIN = 1.0
_CACHE_LIMIT = 4096
# aiohttp warns when asked to clean up closed TLS transports on Pythons that no longer leak them.
_NEEDS_CLEANUP_CLOSED = (3, 13, 0) <= sys.version_info < (3, 13, 1) or sys.version_info < (3, 12, 8)

_E = TypeVar("_E", bound=BaseException)
_Headers = Mapping[str, str] | Sequence[tuple[str, str]]

# Bound on the lookup create_webhook/update_webhook make; a name that does not answer in time passes.
RESOLVE_TIMEOUT = 2.0

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(httpx.ConnectError):
    """The destination resolves only to addresses deliveries may not reach (SSRF guard)."""


class DNSError(httpx.ConnectError):
    """The webhook's host name could not be resolved."""


class TLSError(httpx.ConnectError):
    """The TLS handshake failed, typically an invalid or untrusted certificate."""


class _ResolverBlocked(OSError):
    """Raised inside aiohttp's resolver call; an OSError so aiohttp wraps it instead of losing it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def blocked_reason(address: Address, allowed_networks: Sequence[Network]) -> str | None:
    """Why deliveries may not go to ``address`` (e.g. ``"private address"``), or None if they may.

    IPv4-mapped, 6to4 and NAT64 addresses are judged by the IPv4 address they carry."""
    embedded: Address | None = None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    for net in allowed_networks:
        if address in net or (embedded is not None and embedded in net):
            return None
    target = embedded if embedded is not None else address
    if target.is_unspecified:
        return "unspecified address"
    if target.is_loopback:
        return "loopback address"
    if target.is_link_local:
        return "link-local (cloud metadata) address"
    if target.is_multicast:
        return "multicast address"
    if isinstance(target, ipaddress.IPv4Address) and target in _CGNAT:
        return "shared/CGNAT address"
    if target.is_reserved or (isinstance(target, ipaddress.IPv4Address) and target in _THIS_NETWORK):
        return "reserved address"
    if target.is_private or (isinstance(target, ipaddress.IPv6Address) and target.is_site_local):
        return "private address"
    if not target.is_global:
        return "non-public address"
    return None


def _a(reason: str) -> str:
    return ("an " if reason[0] in "aeiou" else "a ") + reason


def _shown(address: Address) -> str:
    """The address as people write it (IPv4-mapped ones with their dotted quad, as Python 3.13 does)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _literal_message(host: str, address: Address, reason: str) -> str:
    what = _a(reason) if _is_plain_literal(host) else f"{_shown(address)}, {_a(reason)}"
    return f"blocked: {host} is {what}; allow it with {ALLOW_SETTING}"


def _name_message(host: str, address: Address, reason: str) -> str:
    return f"blocked: {host} resolves to {_shown(address)}, {_a(reason)}; allow it with {ALLOW_SETTING}"


def _is_plain_literal(host: str) -> bool:
    """Whether ``host`` is an address in its usual spelling (dotted quad, or any valid IPv6 form)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_HEX = re.compile(r"0x[0-9a-f]*")
_OCTAL = re.compile(r"0[0-7]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_ENDS_IN_NUMBER = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)")


def _ipv4_number(part: str) -> int | None:
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part)
    return None


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` denotes when written as one, else None (a name to resolve).

    Accepts every spelling a URL parser or ``getaddrinfo`` (``inet_aton``) turns into an address,
    so none of them can slip past the guard as a "name": ``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
    ``127.1``, a trailing dot, brackets and IPv6 zones. Raises ValueError for a host that looks
    numeric (its last label is a number, as the WHATWG URL standard puts it) but is no address.
    """
    text = host.lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"the host {host!r} is not a valid IPv6 address") from None
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    if not text.isascii() or not _ENDS_IN_NUMBER.fullmatch(labels[-1]):
        return None
    numbers = [_ipv4_number(label) for label in labels]
    if len(numbers) <= 4 and all(n is not None for n in numbers):
        *head, last = [n for n in numbers if n is not None]
        if all(n <= 255 for n in head) and last < 256 ** (4 - len(head)):
            value = last
            for index, number in enumerate(head):
                value |= number << (8 * (3 - index))
            return ipaddress.IPv4Address(value)
    raise ValueError(f"the host {host!r} looks like an IP address but is not a valid one; check the URL")


@dataclass(frozen=True, slots=True)
class _Refusal:
    message: str
    blocked: bool  # the SSRF guard refused it (else: an unusable spelling)


def _literal_check(host: str, allowed_networks: Sequence[Network]) -> tuple[Address | None, _Refusal | None]:
    """The address an IP-literal host denotes and why it may not be used; (None, None) for a name."""
    try:
        address = literal_address(host)
    except ValueError as exc:
        return None, _Refusal(str(exc), blocked=False)
    if address is None:
        return None, None
    reason = blocked_reason(address, allowed_networks)
    if reason is not None:
        return address, _Refusal(_literal_message(host, address, reason), blocked=True)
    if not _is_plain_literal(host):
        return address, _Refusal(
            f"the host {host!r} is a non-standard spelling of the IP address {address}; write it as {address}",
            blocked=False,
        )
    return address, None


def _url_host(url: str) -> str | None:
    """The host as the sender will see it (httpx's parse), or failing that as ``urlsplit`` has it,
    IDNA-normalised so full-width digits and dots cannot disguise an address."""
    try:
        host = httpx.URL(url).host
    except Exception:
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return None
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return host.lower() or None


async def check_destination(
    url: str,
    allowed_networks: Sequence[Network],
    *,
    resolver: AbstractResolver | None = None,
    resolve_seconds: float = RESOLVE_TIMEOUT,
) -> str | None:
    """Why webhooks may never be delivered to ``url``, or None: its host is a blocked address,
    or a name resolving only to blocked addresses. A name that does not resolve (now) passes:
    the endpoint may exist later, and every delivery is checked again on the address it connects to.
    """
    host = _url_host(url)
    if host is None:
        return None
    address, refusal = _literal_check(host, allowed_networks)
    if refusal is not None:
        return refusal.message
    if address is not None:
        return None
    try:
        httpx.URL(url)
    except Exception as exc:
        return f"url {url!r} is not usable ({exc}); use e.g. https://example.com/webhooks"
    own = resolver is None
    active = DefaultResolver() if resolver is None else resolver
    try:
        async with asyncio.timeout(resolve_seconds):
            results = await active.resolve(host, 0, socket.AF_UNSPEC)
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if own:
            await active.close()
    first_refusal: tuple[Address, str] | None = None
    for result in results:
        try:
            resolved = ipaddress.ip_address(result["host"])
        except ValueError:
            continue
        reason = blocked_reason(resolved, allowed_networks)
        if reason is None:
            return None
        if first_refusal is None:
            first_refusal = (resolved, reason)
    return None if first_refusal is None else _name_message(host, *first_refusal)


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver (or the one given) and drops the addresses
    :func:`blocked_reason` refuses.

    aiohttp connects only to what this returns, on every new connection, so checking here (not
    when the URL is saved) defeats DNS rebinding and names with both public and internal addresses.
    """

    def __init__(self, allowed_networks: Sequence[Network], resolver: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed_networks)
        self._resolver = resolver if resolver is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        kept: list[ResolveResult] = []
        first_refusal: tuple[Address, str] | None = None
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                continue
            reason = blocked_reason(address, self._allowed)
            if reason is None:
                kept.append(result)
            elif first_refusal is None:
                first_refusal = (address, reason)
        if kept:
            return kept
        if first_refusal is not None:
            raise _ResolverBlocked(_name_message(host, *first_refusal))
        raise OSError(f"{host} resolved to no usable address")

    async def close(self) -> None:
        await self._resolver.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one shared aiohttp session: fast pooling, SSRF guard, capped body reads.

    Redirects are not followed and only the first ``max_body_bytes`` of a response body are read.
    The session is created lazily on first use so it binds to the running event loop. ``resolver``
    replaces aiohttp's default name lookup (tests stub DNS with it); whatever it answers is
    checked per connection. ``dns_cache_seconds`` (None: no cache) only caches checked answers.
    """

    def __init__(
        self,
        *,
        allowed_networks: Sequence[Network],
        max_connections: int = 100,
        timeout: float = 10.0,
        max_body_bytes: int = 1024,
        resolver: AbstractResolver | None = None,
        dns_cache_seconds: int | None = 60,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._max_connections = max_connections
        # No ceiling: aiohttp would round timeouts above 5s up to a whole second.
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout, ceil_threshold=math.inf)
        self._max_body_bytes = max_body_bytes
        self._base_resolver = resolver
        self._dns_cache_seconds = dns_cache_seconds
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._literal_checks: dict[str, _Refusal | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        self._resolver = GuardedResolver(self._allowed, self._base_resolver)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            use_dns_cache=self._dns_cache_seconds is not None,
            ttl_dns_cache=self._dns_cache_seconds,
            resolver=self._resolver,
            enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
            timeout_ceil_threshold=math.inf,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=True,
            trust_env=False,
        )
        return self._session

    def _check_literal(self, host: str) -> _Refusal | None:
        """aiohttp skips the resolver for IP-literal hosts (and hands some numeric spellings to
        ``getaddrinfo`` as names), so every host that denotes an address is checked here (memoized)."""
        try:
            return self._literal_checks[host]
        except KeyError:
            pass
        _address, refusal = _literal_check(host, self._allowed)
        if len(self._literal_checks) >= _CACHE_LIMIT:
            self._literal_checks.clear()
        self._literal_checks[host] = refusal
        return refusal

    async def check_destination(self, url: str) -> str | None:
        """:func:`check_destination` with this transport's allow-list and resolver."""
        return await check_destination(url, self._allowed, resolver=self._base_resolver)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        status, _reason, headers, content = await self.exchange(
            request.method, request.url, request.headers.multi_items(), body
        )
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if "Content-Encoding" in headers:
            # The body was decompressed already; httpx must not try again.
            raw = [(k, v) for k, v in raw if k.lower() not in (b"content-encoding", b"content-length")]
        return httpx.Response(status, headers=raw, content=content, request=request)

    async def exchange(
        self, method: str, url: httpx.URL, headers: _Headers, body: bytes
    ) -> tuple[int, str, CIMultiDictProxy[str], bytes]:
        """One request on the shared session: status, reason, headers and the capped body.
        Failures are raised as the httpx exceptions."""
        return await self.exchange_prepared(method, self.prepare(url), url, headers, body)

    def prepare(self, url: httpx.URL) -> URL:
        """Check a URL once (scheme, host, IP-literal guard) and convert it for aiohttp; the
        dispatcher keeps the result per webhook URL, so the hot path does neither again."""
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r} (use http or https)", request=httpx.Request("POST", url)
            )
        if not url.host:
            raise httpx.UnsupportedProtocol("the URL has no host name", request=httpx.Request("POST", url))
        refusal = self._check_literal(url.host)
        if refusal is not None:
            error = BlockedAddressError if refusal.blocked else httpx.UnsupportedProtocol
            raise error(refusal.message, request=httpx.Request("POST", url))
        return URL(str(url), encoded=True)

    async def exchange_prepared(
        self, method: str, target: URL, url: httpx.URL, headers: _Headers, body: bytes
    ) -> tuple[int, str, CIMultiDictProxy[str], bytes]:
        """``exchange`` for a URL already through :meth:`prepare`. The dispatcher calls this
        directly: building httpx objects for every delivery costs more than the rest of the attempt.
        The session's total timeout bounds it, body read included."""
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = self._open()
        try:
            response = await session.request(method, target, headers=headers, data=body, allow_redirects=False)
            try:
                content = await self._read_capped(response.content)
            except BaseException:
                response.close()
                raise
            if response.content.at_eof():
                response.release()
            else:
                response.close()
        except aiohttp.ClientError as exc:
            raise _to_httpx_error(exc, httpx.Request(method, url)) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the response", request=httpx.Request(method, url)) from exc
        return response.status, response.reason or "", response.headers, content

    async def _read_capped(self, stream: aiohttp.StreamReader) -> bytes:
        remaining = self._max_body_bytes
        first = await stream.read(remaining) if remaining > 0 else b""
        if len(first) >= remaining or not first:
            return first
        chunks = [first]
        remaining -= len(first)
        while remaining > 0:
            chunk = await stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()


def _to_httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """Translate aiohttp's exception into the httpx one, so outcomes do not depend on the transport."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("timed out connecting", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout("timed out waiting for the response", request=request)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        cause = _find_cause(exc, _ResolverBlocked)
        if cause is not None:
            return BlockedAddressError(cause.message, request=request)
        return DNSError(exc.os_error.strerror or str(exc.os_error), request=request)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        detail = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None)
        text = f"certificate verify failed: {detail}" if detail else str(cert_error)
        return TLSError(text, request=request)
    if isinstance(exc, aiohttp.ClientSSLError):
        os_error = exc.os_error
        detail = os_error.reason if isinstance(os_error, ssl.SSLError) and os_error.reason else None
        return TLSError(str(detail or os_error.strerror or os_error), request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(_os_error_text(exc.os_error), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError("server disconnected before a complete response", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(f"malformed response body ({exc})", request=request)
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(f"invalid HTTP response ({exc.message})", request=request)
    if isinstance(exc, ConnectionResetError):
        return httpx.ConnectError("connection reset", request=request)
    if isinstance(exc, OSError):
        return httpx.ReadError(_os_error_text(exc), request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(f"invalid URL ({exc})", request=request)
    return httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request)


def _os_error_text(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return error.strerror or str(error) or type(error).__name__


def _find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, kind):
            return seen.os_error
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one delivery attempt produced, in a form the attempt log and the dispatcher store directly."""

    success: bool
    status_code: int | None
    response_ms: float
    error: str | None
    response_excerpt: str
    retry_after: float | None

    @property
    def gone(self) -> bool:
        """HTTP 410: the receiver says the webhook no longer exists."""
        return self.status_code == 410


class Sender:
    """Performs single delivery attempts; never raises (except cancellation), always returns an outcome."""

    def __init__(
        self,
        *,
        timeout: float,
        allowed_networks: Sequence[Network] = (),
        max_connections: int = 100,
        excerpt_bytes: int = 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._timeout = float(timeout)
        self._allowed = tuple(allowed_networks)
        self._resolver = resolver
        self._backstop = self._timeout + _BACKSTOP_MARGIN
        self._excerpt_bytes = excerpt_bytes
        self._urls: dict[str, tuple[httpx.URL, URL | None]] = {}
        self._transport: httpx.AsyncBaseTransport = (
            transport
            if transport is not None
            else AiohttpTransport(
                allowed_networks=allowed_networks,
                max_connections=max_connections,
                timeout=timeout,
                max_body_bytes=excerpt_bytes,
                resolver=resolver,
            )
        )
        # Our own transport is driven without httpx objects; any other (respx in tests) through httpx.
        self._direct = self._transport if isinstance(self._transport, AiohttpTransport) else None

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        start = time.perf_counter()
        known = self._urls.get(url)
        if known is None:
            try:
                # Parsing and checking a URL is the dearest part of a request; webhooks are few.
                parsed = httpx.URL(url)
            except Exception as exc:
                # A spelling httpx rejects (0177.0.0.1) may still be an address a resolver accepts.
                host = _url_host(url)
                _address, refusal = (None, None) if host is None else _literal_check(host, self._allowed)
                if refusal is not None and refusal.blocked:
                    return self._failure(start, refusal.message)
                return self._failure(start, f"invalid webhook URL {url!r}: {exc}")
            try:
                target = self._direct.prepare(parsed) if self._direct is not None else None
            except Exception as exc:
                return self._failure(start, self._describe(exc, parsed))
            if len(self._urls) >= _CACHE_LIMIT:
                self._urls.clear()
            known = self._urls[url] = (parsed, target)
        parsed, target = known
        try:
            if self._direct is not None and target is not None:
                status, reason, response_headers, data = await self._direct.exchange_prepared(
                    "POST", target, parsed, headers, body
                )
                return self._outcome(start, parsed, status, reason, response_headers, data)
            async with asyncio.timeout(self._backstop):
                request = httpx.Request("POST", parsed, headers=headers, content=body)
                response = await self._transport.handle_async_request(request)
                data = await self._read_excerpt(response)
            return self._outcome(start, parsed, response.status_code, response.reason_phrase, response.headers, data)
        except Exception as exc:
            return self._failure(start, self._describe(exc, parsed))

    async def check_destination(self, url: str) -> str | None:
        """Why webhooks may never be delivered to ``url`` (see :func:`check_destination`), or None.
        For create/update; deliveries are checked again, per connection."""
        if self._direct is not None:
            return await self._direct.check_destination(url)
        return await check_destination(url, self._allowed, resolver=self._resolver)

    async def _read_excerpt(self, response: httpx.Response) -> bytes:
        cap = self._excerpt_bytes
        try:
            return response.content[:cap]
        except httpx.ResponseNotRead:
            pass
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    break
        finally:
            await response.aclose()
        return b"".join(chunks)[:cap]

    def _outcome(
        self, start: float, url: httpx.URL, status: int, reason: str, headers: Mapping[str, str], data: bytes
    ) -> SendOutcome:
        success = 200 <= status < 300
        error: str | None = None
        retry_after: float | None = None
        if not success:
            error = f"HTTP {status} {reason}".rstrip()
            location = headers.get("location")
            if 300 <= status < 400 and location:
                try:
                    target = str(url.join(location))
                except Exception:
                    target = location
                error = f"HTTP {status} redirect to {target} (redirects are not followed; update the webhook URL)"
            elif status in (429, 503):
                retry_after = parse_retry_after(headers.get("retry-after"))
        return SendOutcome(
            success=success,
            status_code=status,
            response_ms=round((time.perf_counter() - start) * 1000, 1),
            error=error,
            response_excerpt=data[: self._excerpt_bytes].decode("utf-8", errors="replace"),
            retry_after=retry_after,
        )

    def _failure(self, start: float, error: str) -> SendOutcome:
        return SendOutcome(
            success=False,
            status_code=None,
            response_ms=round((time.perf_counter() - start) * 1000, 1),
            error=error,
            response_excerpt="",
            retry_after=None,
        )

    def _describe(self, exc: Exception, url: httpx.URL) -> str:
        """The failure in words a merchant can act on, whichever transport raised it."""
        where = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
        detail = str(exc)
        if isinstance(exc, BlockedAddressError):
            return detail or f"blocked: {url.host} is not a public address; allow it with {ALLOW_SETTING}"
        if isinstance(exc, DNSError):
            return f"DNS lookup failed for {url.host}" + (f" ({detail})" if detail else "")
        if isinstance(exc, TLSError):
            return f"TLS error: {detail or 'handshake failed'} ({where})"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"timed out after {self._timeout}s connecting to {where}"
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return f"timed out after {self._timeout}s waiting for a response"
        if isinstance(exc, httpx.ConnectError | httpx.ReadError):
            lowered = detail.lower()
            if "refused" in lowered:
                return f"connection refused by {where}"
            if "reset" in lowered:
                return f"connection reset by {where}"
            verb = "could not connect to" if isinstance(exc, httpx.ConnectError) else "error reading from"
            return f"{verb} {where}" + (f": {detail}" if detail else "")
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"{where} closed the connection or sent an invalid response" + (f" ({detail})" if detail else "")
        if isinstance(exc, httpx.WriteError):
            return f"error sending the request to {where}" + (f": {detail}" if detail else "")
        if isinstance(exc, httpx.UnsupportedProtocol):
            return f"cannot deliver to {url}: {detail}"
        if isinstance(exc, httpx.TransportError):
            return f"delivery to {where} failed: {type(exc).__name__}: {detail}"
        return f"unexpected error: {type(exc).__name__}: {detail}"

    async def aclose(self) -> None:
        """Close the transport (also one passed in, as httpx clients do)."""
        await self._transport.aclose()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (past dates give 0)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
