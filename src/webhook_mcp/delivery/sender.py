"""One webhook delivery attempt: a signed JSON POST turned into a :class:`SendOutcome`.

httpx is the interface (requests, responses, exceptions, pluggable transports) so tests can inject
``respx.MockTransport``; the default transport, :class:`Http1Transport`, drives our own lean HTTP/1.1
client (:mod:`webhook_mcp.delivery.http1`) because httpx's connection pool is an order of magnitude slower at
dispatcher concurrency and aiohttp's client spends ~3x the CPU per request. Name lookup still goes
through aiohttp's resolver interface, so :class:`GuardedResolver` can check every answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import httpx
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict

from webhook_mcp.delivery import http1
from webhook_mcp.delivery.guard import (
    ALLOW_SETTING,
    GuardedResolver,
    Network,
    Refusal,
    ResolverBlocked,
    blocked_reason,
    check_destination,
    literal_address,
    literal_check,
    url_host,
)
from webhook_mcp.delivery.http1 import BlockedAddressError, DNSError, TLSError

__all__ = [
    "BlockedAddressError",
    "DNSError",
    "GuardedResolver",
    "Http1Transport",
    "Network",
    "SendOutcome",
    "Sender",
    "TLSError",
    "blocked_reason",
    "check_destination",
    "literal_address",
]

# Headers the HTTP/1.1 client writes itself (httpx requests carry their own copies).
_OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding"))
# Slack on top of the transport's own timeout before the sender gives up on it regardless.
_BACKSTOP_MARGIN = 1.0
_CACHE_LIMIT = 4096
_Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class Http1Transport(httpx.AsyncBaseTransport):
    """An httpx transport over our own HTTP/1.1 client (:mod:`webhook_mcp.delivery.http1`): keep-alive
    pooling, the SSRF guard on every connection, capped body reads.

    Redirects are not followed and only the first ``max_body_bytes`` of a response body are read.
    The client is created lazily on first use so it binds to the running event loop. ``resolver``
    replaces the default name lookup (tests stub DNS with it); whatever it answers is checked by
    :class:`GuardedResolver` for every new connection, and only checked addresses are connected to.
    ``dns_cache_seconds`` (None: no cache) only caches checked answers. ``ssl_context`` replaces
    ``ssl.create_default_context()`` (tests trust their own CA with it).
    """

    def __init__(
        self,
        *,
        allowed_networks: Sequence[Network],
        max_connections: int = 100,
        timeout: float = 10.0,
        max_body_bytes: int = 1024,
        resolver: AbstractResolver | None = None,
        dns_cache_seconds: float | None = 60,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._max_connections = max_connections
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._base_resolver = resolver
        self._dns_cache_seconds = dns_cache_seconds
        self._ssl_context = ssl_context
        self._client: http1.Client | None = None
        self._resolver: GuardedResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._literal_checks: dict[str, Refusal | None] = {}

    def _open(self) -> http1.Client:
        self._loop = asyncio.get_running_loop()
        # aiohttp's default resolver binds to the running loop, so it is made afresh with the client.
        self._resolver = GuardedResolver(self._allowed, self._base_resolver)
        self._dns.clear()
        self._client = http1.Client(
            resolve=self._resolve,
            max_connections=self._max_connections,
            timeout=self._timeout,
            max_body_bytes=self._max_body_bytes,
            ssl_context=self._ssl_context,
        )
        return self._client

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` the guard allows, in the resolver's order (cached if enabled)."""
        loop = asyncio.get_running_loop()
        ttl = self._dns_cache_seconds
        if ttl is not None:
            cached = self._dns.get((host, port))
            if cached is not None and cached[0] > loop.time():
                return cached[1]
        resolver = self._resolver
        assert resolver is not None
        try:
            results = await resolver.resolve(host, port, socket.AF_UNSPEC)
        except ResolverBlocked as exc:
            raise BlockedAddressError(exc.message) from None
        except OSError as exc:
            raise DNSError(exc.strerror or str(exc)) from None
        addresses = [result["host"] for result in results]
        if ttl is not None:
            if len(self._dns) >= _CACHE_LIMIT:
                self._dns.clear()
            self._dns[(host, port)] = (loop.time() + ttl, addresses)
        return addresses

    def _check_literal(self, host: str) -> Refusal | None:
        """Every host that denotes an address is checked here (memoized): those are connected to
        without a lookup, and some numeric spellings would reach ``getaddrinfo`` as names."""
        try:
            return self._literal_checks[host]
        except KeyError:
            pass
        _address, refusal = literal_check(host, self._allowed)
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
        # httpx adds Host and Content-Length to every request; the client writes its own.
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _OWN_HEADERS]
        status, _reason, response_headers, content = await self.exchange(request.method, request.url, headers, body)
        raw = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in response_headers.items()]
        if "Content-Encoding" in response_headers:
            # The body was decompressed already; httpx must not try again.
            raw = [(k, v) for k, v in raw if k.lower() not in (b"content-encoding", b"content-length")]
        return httpx.Response(status, headers=raw, content=content, request=request)

    async def exchange(
        self, method: str, url: httpx.URL, headers: _Headers, body: bytes
    ) -> tuple[int, str, CIMultiDict[str], bytes]:
        """One request: status, reason, headers and the capped body. Failures are raised as the
        httpx exceptions."""
        return await self.exchange_prepared(method, self.prepare(url), url, headers, body)

    def prepare(self, url: httpx.URL) -> http1.Target:
        """Check a URL once (scheme, host, IP-literal guard) and precompute its request line and
        Host header; the sender keeps the result per webhook URL, so the hot path does neither again."""
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
        host = url.raw_host.decode("ascii")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        address = literal_address(host)
        shown = f"[{host}]" if ":" in host else host
        authority = shown if url.port is None else f"{shown}:{port}"
        path = url.raw_path.decode("ascii") or "/"
        return http1.Target(
            key=(url.scheme, host, port),
            host=host,
            port=port,
            tls=tls,
            address=None if address is None else str(address),
            head=f" {path} HTTP/1.1\r\nHost: {authority}\r\n",
        )

    async def exchange_prepared(
        self, method: str, target: http1.Target, url: httpx.URL, headers: _Headers, body: bytes
    ) -> tuple[int, str, CIMultiDict[str], bytes]:
        """``exchange`` for a URL already through :meth:`prepare`. The sender calls this directly:
        building httpx objects for every delivery costs more than the rest of the attempt.
        The transport's timeout bounds it, connecting and body read included."""
        client = self._client
        if client is None or self._loop is not asyncio.get_running_loop():
            client = self._open()
        items = headers.items() if isinstance(headers, Mapping) else headers
        try:
            return await client.request(method, target, items, body)
        except httpx.TransportError as exc:
            exc.request = httpx.Request(method, url)
            raise

    async def aclose(self) -> None:
        client, resolver = self._client, self._resolver
        self._client = self._resolver = None
        if client is not None:
            client.close()
            await asyncio.sleep(0)  # let the aborted connections report connection_lost
        if resolver is not None:
            await resolver.close()


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
        own_urls: Callable[[str], bool] | None = None,
    ) -> None:
        self._timeout = float(timeout)
        # URLs this process serves itself (its inboxes): reached although local, nothing else is.
        self._own_urls = own_urls
        self._own: Http1Transport | None = None
        self._allowed = tuple(allowed_networks)
        self._resolver = resolver
        self._backstop = self._timeout + _BACKSTOP_MARGIN
        self._excerpt_bytes = excerpt_bytes
        self._urls: dict[str, tuple[httpx.URL, http1.Target | None]] = {}
        self._transport: httpx.AsyncBaseTransport = (
            transport
            if transport is not None
            else Http1Transport(
                allowed_networks=allowed_networks,
                max_connections=max_connections,
                timeout=timeout,
                max_body_bytes=excerpt_bytes,
                resolver=resolver,
            )
        )
        # Our own transport is driven without httpx objects; any other (respx in tests) through httpx.
        self._direct = self._transport if isinstance(self._transport, Http1Transport) else None

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        start = time.perf_counter()
        if self._own_urls is not None and self._own_urls(url):
            return await self._send_own(start, url, headers, body)
        known = self._urls.get(url)
        if known is None:
            try:
                # Parsing and checking a URL is the dearest part of a request; webhooks are few.
                parsed = httpx.URL(url)
            except Exception as exc:
                # A spelling httpx rejects (0177.0.0.1) may still be an address a resolver accepts.
                host = url_host(url)
                _address, refusal = (None, None) if host is None else literal_check(host, self._allowed)
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

    async def _send_own(self, start: float, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        """A URL this process serves (an inbox): its address is one we chose, so any is allowed,
        for this exact URL only (it is never cached with the guarded ones)."""
        if self._own is None:
            everywhere = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
            self._own = Http1Transport(allowed_networks=everywhere, timeout=self._timeout, max_connections=8)
        parsed = httpx.URL(url)
        try:
            status, reason, response_headers, data = await self._own.exchange("POST", parsed, headers, body)
        except Exception as exc:
            return self._failure(start, self._describe(exc, parsed))
        return self._outcome(start, parsed, status, reason, response_headers, data)

    async def check_destination(self, url: str) -> str | None:
        """Why webhooks may never be delivered to ``url`` (see :func:`check_destination`), or None.
        For create/update; deliveries are checked again, per connection."""
        if self._own_urls is not None and self._own_urls(url):
            return None
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
        if self._own is not None:
            await self._own.aclose()
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
