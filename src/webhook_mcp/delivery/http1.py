"""A lean HTTP/1.1 client for webhook deliveries: ``asyncio.Protocol`` + ``httptools``, pooled keep-alive.

Why our own: a delivery is one small POST and a small, capped response read, and aiohttp's general
machinery cost ~3x the client CPU of this. Left out on purpose: redirects, cookies, proxies, request
streaming, pipelining, HTTP/2. Name lookup (and so the SSRF guard) is the caller's ``resolve``
function; this module connects only to the addresses it returns.

Failures are raised as httpx exceptions without a request attached (the caller adds it), with the
texts the sender turns into merchant-readable messages.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import httptools
import httpx
from multidict import CIMultiDict

__all__ = ["IDLE_SECONDS", "BlockedAddressError", "Client", "DNSError", "Response", "TLSError", "Target"]

# Idle keep-alive connections older than this are closed rather than reused (servers time them out).
IDLE_SECONDS = 15.0
# A compressed response is read at most this far past the cap while looking for the excerpt's text.
_COMPRESSED_SLACK = 64 * 1024
# Beyond the body's cap, what a response may bring (headers, framing, interim responses, compressed
# bytes) before it is cut off: a hostile receiver must not make us read without end.
_MAX_OVERHEAD = 2 * _COMPRESSED_SLACK
_DECODERS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]
Response = tuple[int, str, CIMultiDict[str], bytes]
Key = tuple[str, str, int]
_Raw = tuple[int, bytes, list[tuple[bytes, bytes]], bytes]


class BlockedAddressError(httpx.ConnectError):
    """The destination resolves only to addresses deliveries may not reach (SSRF guard)."""


class DNSError(httpx.ConnectError):
    """The webhook's host name could not be resolved."""


class TLSError(httpx.ConnectError):
    """The TLS handshake failed, typically an invalid or untrusted certificate."""


@dataclass(frozen=True, slots=True)
class Target:
    """Everything about a URL the hot path needs, computed once per webhook URL."""

    key: Key  # (scheme, host, port): the pool a connection belongs to
    host: str  # looked up through ``resolve`` and sent as the TLS server name
    port: int
    tls: bool
    address: str | None  # an IP-literal host (already checked): connected to without a lookup
    head: str  # " <path?query> HTTP/1.1\r\nHost: <host[:port]>\r\n", after the method


class _Dropped(Exception):
    """The connection ended before any byte of the response: the request may never have been seen,
    so a reused connection is retried once (a keep-alive timeout race on the server)."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(cause)
        self.cause = cause

    def error(self) -> httpx.TransportError:
        if self.cause is None:
            return httpx.RemoteProtocolError("server disconnected before a complete response")
        return _lost_error(self.cause)


def _lost_error(cause: BaseException | None) -> httpx.TransportError:
    if cause is None:
        return httpx.RemoteProtocolError("server disconnected before a complete response")
    if isinstance(cause, OSError):
        return httpx.ReadError(_os_error_text(cause))
    return httpx.ReadError(f"{type(cause).__name__}: {cause}")


def _os_error_text(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return error.strerror or str(error) or type(error).__name__


def _connect_error(exc: OSError) -> httpx.ConnectError:
    """The texts aiohttp's errors were mapped to, so outcomes read the same as before."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason
        return TLSError(f"certificate verify failed: {detail}" if detail else str(exc))
    if isinstance(exc, ssl.SSLError):
        return TLSError(str(exc.reason or exc.strerror or exc))
    return httpx.ConnectError(_os_error_text(exc))


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses one response per request it is given."""

    def __init__(self, client: Client, key: Key) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[_Raw] | None = None
        self.cap = client.max_body_bytes
        self.limit = self.cap + _MAX_OVERHEAD
        self.received = 0
        self.closed = False
        self.counted = False  # holds one of the client's max_connections slots
        self.reusable = False
        self.got_data = False
        self.idle_since = 0.0
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.encoding: bytes | None = None
        self.decoder: zlib._Decompress | None = None
        self.decoded: list[bytes] = []
        self.decoded_size = 0

    # -- driving ---------------------------------------------------------------------------------

    def begin(self, waiter: asyncio.Future[_Raw]) -> None:
        self.waiter = waiter
        self.status = 0  # not the previous response's: nothing of this one has arrived yet
        self.received = 0
        self.got_data = False
        self.reusable = False

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # answered in the same loop iteration: the timer just had not been cancelled yet
        self.waiter = None
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the response"))
        self.abort()

    def _finish(self) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, self.reason, self.headers, self._body()))

    def _body(self) -> bytes:
        if self.decoder is not None:
            return b"".join(self.decoded)[: self.cap]
        return b"".join(self.chunks)[: self.cap]

    def _fail(self, error: BaseException) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # Bytes nobody asked for (on an idle connection, or after the response): unusable.
            self.abort()
            return
        self.got_data = True
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response ({exc or type(exc).__name__})"))
            return
        if self.received > self.limit and self.waiter is not None:
            if self.status >= 200:
                self._finish()  # endless trailers or framing: the excerpt so far is the answer
                self.abort()
            else:
                self._fail(httpx.RemoteProtocolError("invalid HTTP response (headers too long)"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self.client._lost(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.waiter = None
        if exc is None and self.status >= 200 and self._delimited_by_close():
            waiter.set_result((self.status, self.reason, self.headers, self._body()))
        elif not self.got_data:
            waiter.set_exception(_Dropped(exc))
        else:
            waiter.set_exception(_lost_error(exc))

    def _delimited_by_close(self) -> bool:
        """No length and not chunked: the body ends where the connection does."""
        return all(name.lower() not in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:
            self.abort()  # a second response nobody asked for
            return
        self.status = 0
        self.reason = b""
        self.headers = []
        self.chunks = []
        self.size = 0
        self.encoding = None
        self.decoder = None

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 16 and name.lower() == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.encoding is not None:
            wbits = _DECODERS.get(self.encoding)
            if wbits is not None:
                self.decoder = zlib.decompressobj(wbits)
                self.decoded = []
                self.decoded_size = 0

    def on_body(self, body: bytes) -> None:
        if self.waiter is None:
            return
        size = self.size + len(body)
        cap = self.cap
        if self.size < cap:
            self.chunks.append(body)
        self.size = size
        if self.decoder is not None:
            self._decode(body)
        elif size > cap:
            # Enough for the excerpt: stop reading and drop the connection; never drain the rest.
            self._finish()
            self.abort()

    def _decode(self, body: bytes) -> None:
        """Decompress toward a ``cap``-byte excerpt; on corrupt data fall back to the raw bytes."""
        decoder = self.decoder
        assert decoder is not None
        cap = self.cap
        try:
            if self.decoded_size < cap:
                out = decoder.decompress(body, cap - self.decoded_size)
                self.decoded.append(out)
                self.decoded_size += len(out)
        except zlib.error:
            if self.encoding == b"deflate" and not self.decoded_size and self._try_raw_deflate():
                return
            self.decoder = None
            if self.size > cap:
                self._finish()
                self.abort()
            return
        if self.decoded_size >= cap or self.size > cap + _COMPRESSED_SLACK:
            self._finish()
            self.abort()

    def _try_raw_deflate(self) -> bool:
        """Some servers send ``deflate`` without the zlib wrapper."""
        decoder = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = decoder.decompress(b"".join(self.chunks), self.cap)
        except zlib.error:
            return False
        self.decoder = decoder
        self.decoded = [out]
        self.decoded_size = len(out)
        return True

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return  # an interim response (100 Continue): the real one follows
        waiter = self.waiter
        if waiter is None:
            return
        keep_alive = self.parser.should_keep_alive()
        self._finish()
        self.reusable = keep_alive
        if not keep_alive and self.transport is not None:
            self.transport.close()


class Client:
    """A keep-alive connection pool and request runner, bound to the running loop.

    At most ``max_connections`` connections are open at once (idle ones included; an idle one to
    another host is closed to make room); beyond that, requests wait for a free one. ``timeout``
    bounds each request from start to complete response, waiting and connecting included.
    """

    def __init__(
        self,
        *,
        resolve: Resolve,
        max_connections: int,
        timeout: float,
        max_body_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._resolve = resolve
        self._max_connections = max(1, max_connections)
        self._timeout = timeout
        self.max_body_bytes = max(0, max_body_bytes)
        self._ssl_context = ssl_context
        self._idle: dict[Key, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(self, method: str, target: Target, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
        """Send one request and return status, reason, headers and the body capped at ``max_body_bytes``."""
        loop = self._loop
        deadline = loop.time() + self._timeout
        head = _head(method, target, headers, len(body))
        conn = self._pop_idle(target.key)
        reused = conn is not None
        if conn is None:
            conn, reused = await self._acquire(target, deadline, fresh=False)
        while True:
            try:
                return self._done(conn, await self._roundtrip(conn, head, body, deadline))
            except _Dropped as exc:
                if not reused:
                    raise exc.error() from exc.cause
            # A reused connection died before answering: retry once, on a new connection.
            conn, reused = await self._acquire(target, deadline, fresh=True)

    async def _roundtrip(self, conn: _Connection, head: bytes, body: bytes, deadline: float) -> _Raw:
        loop = self._loop
        waiter: asyncio.Future[_Raw] = loop.create_future()
        conn.begin(waiter)
        transport = conn.transport
        assert transport is not None
        transport.writelines((head, body))
        timer = loop.call_at(deadline, conn.timed_out)
        try:
            return await waiter
        except BaseException:
            # Timed out, failed or cancelled (the dispatcher stopping): the connection is done for.
            conn.abort()
            raise
        finally:
            timer.cancel()

    def _done(self, conn: _Connection, raw: _Raw) -> Response:
        if conn.reusable and not conn.closed:
            self._release(conn)
        status, reason, headers, body = raw
        return (
            status,
            reason.decode("utf-8", "replace"),
            CIMultiDict([(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers]),
            body,
        )

    # -- the pool --------------------------------------------------------------------------------

    def _pop_idle(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest = self._loop.time() - IDLE_SECONDS
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been timed out
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                continue
            if conn.idle_since < oldest:
                # This one and every older one below it have been idle too long.
                self._retire(conn)
                for old in idle:
                    self._retire(old)
                idle.clear()
                return None
            return conn
        return None

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        conn.idle_since = self._loop.time()
        idle = self._idle.get(conn.key)
        if idle is None:
            self._idle[conn.key] = [conn]
        else:
            idle.append(conn)
        if self._waiters:
            self._wake()
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(IDLE_SECONDS, self._sweep)

    def _retire(self, conn: _Connection) -> None:
        """Close an idle connection and free its slot now (not when the close completes)."""
        if conn.counted:
            conn.counted = False
            self._open -= 1
        conn.reusable = False
        if conn.transport is not None:
            conn.transport.close()

    def _sweep(self) -> None:
        """Close connections idle for longer than IDLE_SECONDS even if no request comes to reuse them."""
        self._sweeper = None
        oldest = self._loop.time() - IDLE_SECONDS
        for key, idle in list(self._idle.items()):
            keep = [conn for conn in idle if not conn.closed and conn.idle_since >= oldest]
            for conn in idle:
                if not conn.closed and conn.idle_since < oldest:
                    self._retire(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = self._loop.call_later(IDLE_SECONDS, self._sweep)
        if self._waiters:
            self._wake()

    def _evict_idle(self) -> bool:
        """Make room by closing the oldest idle connection of some host."""
        for idle in self._idle.values():
            while idle:
                conn = idle.pop(0)
                if conn.counted and not conn.closed:
                    self._retire(conn)
                    return True
        return False

    def _lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn.counted:
            conn.counted = False
            self._open -= 1
            if self._waiters:
                self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken and then cancelled: pass the free slot on
            raise

    async def _acquire(self, target: Target, deadline: float, *, fresh: bool) -> tuple[_Connection, bool]:
        """A connection for ``target`` and whether it was reused: an idle one freed while waiting for
        a slot (unless ``fresh``), or a new one. Waiting, lookup and connecting all end by ``deadline``."""
        if self._closed:
            raise httpx.ConnectError("the transport was closed")
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    if self._closed:
                        raise httpx.ConnectError("the transport was closed")
                    if not fresh:
                        conn = self._pop_idle(target.key)
                        if conn is not None:
                            return conn, True
                    if self._open < self._max_connections or self._evict_idle():
                        break
                    await self._wait_for_slot()
                self._open += 1
                try:
                    conn = await self._connect(target)
                    if self._closed:
                        conn.abort()
                        raise httpx.ConnectError("the transport was closed")
                except BaseException:
                    self._open -= 1
                    if self._waiters:
                        self._wake()
                    raise
                conn.counted = True
                self._all.add(conn)
                return conn, False
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting") from None

    async def _connect(self, target: Target) -> _Connection:
        addresses: Sequence[str] = (
            (target.address,) if target.address is not None else await self._resolve(target.host, target.port)
        )
        context = self._context() if target.tls else None
        server_hostname = target.host if target.tls else None
        error: httpx.ConnectError = DNSError(f"{target.host} resolved to no usable address")
        for address in addresses:
            try:
                _transport, conn = await self._loop.create_connection(
                    lambda: _Connection(self, target.key),
                    address,
                    target.port,
                    ssl=context,
                    server_hostname=server_hostname,
                )
            except OSError as exc:
                error = _connect_error(exc)
                continue
            if conn.closed:
                error = httpx.ConnectError("connection reset")
                continue
            return conn
        raise error

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def close(self) -> None:
        """Abort every connection, idle or in use; requests in flight fail, waiting ones too."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        for conn in list(self._all):
            conn.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpx.ConnectError("the transport was closed"))


def _head(method: str, target: Target, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    """Request line and headers as sent: ours are Host and Content-Length, the rest verbatim."""
    lines = [f"{name}: {value}\r\n" for name, value in headers]
    text = "".join(lines)
    # One line break per header, or a name or value carries its own (header injection).
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise httpx.LocalProtocolError("a header name or value contains a line break")
    return f"{method}{target.head}{text}Content-Length: {length}\r\n\r\n".encode()
