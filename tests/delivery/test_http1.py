"""The HTTP/1.1 delivery client against scripted raw servers on 127.0.0.1: keep-alive and its races,
capped and compressed bodies, every way a body can end, timeouts, TLS, the connection limit, and
the SSRF guard on names. The servers count connections, so reuse and closing are observed, not assumed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import httptools
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook_mcp.delivery import http1
from webhook_mcp.delivery.sender import BlockedAddressError, Http1Transport, Network, Sender

pytestmark = pytest.mark.anyio

LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]
BODY = b'{"type":"order.created","data":{"id":1}}'
HEADERS = {
    "User-Agent": "webhook-mcp-test",
    "Content-Type": "application/json",
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,abc",
}
NAME = "hooks.example.com"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- a scripted raw server ---------------------------------------------------------------------------


@dataclass
class Request:
    conn: int  # which connection (0 = the first the server accepted)
    index: int  # which request on that connection
    method: bytes = b""
    path: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Reply:
    """What the server does with a request: write ``data`` (None: nothing), then close if ``close``;
    ``stream`` writes the response itself (for bodies that do not fit a bytes literal)."""

    data: bytes | None = None
    close: bool = False
    stream: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None
    hang: bool = False


DROP = Reply(close=True)


def response(
    body: bytes = b"ok", status: str = "200 OK", headers: Mapping[str, str] | None = None, length: bool = True
) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Server:
    """An HTTP/1.1 server whose every answer is scripted, counting connections and their ends."""

    def __init__(self, script: Callable[[Request], Reply] | None = None) -> None:
        self.script = script or (lambda request: Reply(response()))
        self.requests: list[Request] = []
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.ended: list[asyncio.Event] = []
        self.got_request = asyncio.Event()
        self.release = asyncio.Event()
        self.port = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}/hook"
        return self

    async def stop(self) -> None:
        self.release.set()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with anyio.fail_after(5):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        ended = asyncio.Event()
        self.ended.append(ended)
        self._writers.add(writer)
        complete: list[Request] = []
        current = Request(number, 0)

        class Callbacks:
            def on_url(self, url: bytes) -> None:
                current.path += url

            def on_header(self, name: bytes, value: bytes) -> None:
                current.headers.append((name, value))

            def on_body(self, body: bytes) -> None:
                current.body += body

            def on_message_complete(self) -> None:
                nonlocal current
                current.method = parser.get_method()
                complete.append(current)
                current = Request(number, current.index + 1)

        parser = httptools.HttpRequestParser(Callbacks())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                parser.feed_data(data)
                while complete:
                    request = complete.pop(0)
                    self.requests.append(request)
                    self.got_request.set()
                    reply = self.script(request)
                    if reply.hang and not await self._hold(reader):
                        return
                    if reply.data is not None:
                        writer.write(reply.data)
                        await writer.drain()
                    if reply.stream is not None:
                        await reply.stream(writer)
                    if reply.close:
                        return
        except (ConnectionError, httptools.HttpParserError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.transport.abort()
            ended.set()

    async def _hold(self, reader: asyncio.StreamReader) -> bool:
        """Until released (True) or the client hangs up (False)."""
        released = asyncio.ensure_future(self.release.wait())
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({released, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
            hangup.cancel()
            await asyncio.gather(released, hangup, return_exceptions=True)
        return not (hangup.done() and not hangup.cancelled() and hangup.result() == b"")

    async def wait_ended(self, conn: int, seconds: float = 5.0) -> None:
        """Until connection ``conn`` is over (the client closed it, or the script did)."""
        with anyio.fail_after(seconds):
            while len(self.ended) <= conn:
                await self.got_request.wait()
                self.got_request.clear()
            await self.ended[conn].wait()

    def where(self) -> list[tuple[int, int]]:
        return [(r.conn, r.index) for r in self.requests]


@contextlib.asynccontextmanager
async def serving(
    script: Callable[[Request], Reply] | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = await Server(script).start(ssl_context)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def sending(**options: object) -> AsyncIterator[Sender]:
    transport = Http1Transport(
        allowed_networks=options.pop("allowed", LOOPBACK),  # type: ignore[arg-type]
        timeout=options.pop("timeout", 2.0),  # type: ignore[arg-type]
        max_body_bytes=options.pop("cap", 1024),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    async with Sender(timeout=transport._timeout, transport=transport, excerpt_bytes=transport._max_body_bytes) as s:
        yield s


class StubResolver(AbstractResolver):
    """Fixed DNS answers; counts lookups."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        pass


# --- the request as sent -----------------------------------------------------------------------------


async def test_request_is_exactly_our_headers_host_and_length() -> None:
    async with serving() as server, sending() as sender:
        outcome = await sender.send(server.url + "?a=1&b=%20", HEADERS, BODY)
    assert outcome.success and outcome.response_excerpt == "ok", outcome.error
    (request,) = server.requests
    assert request.method == b"POST" and request.path == b"/hook?a=1&b=%20" and request.body == BODY
    assert request.headers == [
        (b"Host", f"127.0.0.1:{server.port}".encode()),
        *[(k.encode(), v.encode()) for k, v in HEADERS.items()],
        (b"Content-Length", str(len(BODY)).encode()),
    ]


async def test_header_with_a_line_break_is_refused_before_connecting() -> None:
    async with serving() as server, sending() as sender:
        outcome = await sender.send(server.url, {**HEADERS, "webhook-id": "x\r\nX-Injected: 1"}, BODY)
    assert outcome.error is not None and "contains a line break" in outcome.error, outcome.error
    assert server.connections == 0


# --- keep-alive ---------------------------------------------------------------------------------------


async def test_keep_alive_connection_is_reused() -> None:
    async with serving() as server, sending() as sender:
        for _ in range(5):
            assert (await sender.send(server.url, HEADERS, BODY)).success
    assert server.connections == 1 and server.where() == [(0, i) for i in range(5)]


async def test_stale_idle_connection_is_retried_once_on_a_new_one() -> None:
    """The server drops a kept-alive connection as the next request arrives (its keep-alive timeout
    race): the request is sent again on a new connection, and succeeds."""

    def script(request: Request) -> Reply:
        return DROP if (request.conn, request.index) == (0, 1) else Reply(response())

    async with serving(script) as server, sending() as sender:
        first = await sender.send(server.url, HEADERS, BODY)
        second = await sender.send(server.url, HEADERS, BODY)
    assert first.success and second.success, second.error
    assert server.where() == [(0, 0), (0, 1), (1, 0)]


async def test_a_new_connection_dropped_before_answering_is_not_retried() -> None:
    async with serving(lambda request: DROP) as server, sending() as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.error == (
        f"127.0.0.1:{server.port} closed the connection or sent an invalid response "
        "(server disconnected before a complete response)"
    )
    assert server.where() == [(0, 0)]


async def test_a_reused_connection_dropped_mid_response_is_not_retried() -> None:
    """Part of a response arrived, so the request was seen: sending it again could deliver twice."""

    def script(request: Request) -> Reply:
        if request.index == 1:
            return Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True)
        return Reply(response())

    async with serving(script) as server, sending() as sender:
        assert (await sender.send(server.url, HEADERS, BODY)).success
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.error is not None and "server disconnected before a complete response" in outcome.error
    assert server.where() == [(0, 0), (0, 1)]


async def test_connection_close_is_honoured() -> None:
    """The server says Connection: close but leaves the socket open: the client closes it."""
    reply = Reply(response(headers={"Connection": "close"}))
    async with serving(lambda request: reply) as server, sending() as sender:
        assert (await sender.send(server.url, HEADERS, BODY)).success
        await server.wait_ended(0)
        assert (await sender.send(server.url, HEADERS, BODY)).success
    assert server.where() == [(0, 0), (1, 0)]


async def test_idle_connections_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle past IDLE_SECONDS: closed by the sweep with no request coming, and never reused."""
    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.05)
    async with serving() as server, sending() as sender:
        assert (await sender.send(server.url, HEADERS, BODY)).success
        await server.wait_ended(0)  # the sweep closed it
        assert (await sender.send(server.url, HEADERS, BODY)).success
        monkeypatch.setattr(http1, "IDLE_SECONDS", -1.0)  # now every idle connection is too old
        assert (await sender.send(server.url, HEADERS, BODY)).success
        await server.wait_ended(1)
    assert server.where() == [(0, 0), (1, 0), (2, 0)]


async def test_unsolicited_bytes_make_a_connection_unusable() -> None:
    """Anything after the response (a second response nobody asked for) is not left for the next
    request to read as its own: that connection is dropped."""
    reply = Reply(response() + response(b"surprise"))
    async with serving(lambda request: reply) as server, sending() as sender:
        first = await sender.send(server.url, HEADERS, BODY)
        await server.wait_ended(0)
        second = await sender.send(server.url, HEADERS, BODY)
    assert first.response_excerpt == "ok" and second.response_excerpt == "ok"
    assert server.where() == [(0, 0), (1, 0)]


# --- response bodies ------------------------------------------------------------------------------------


async def test_body_over_the_cap_closes_the_connection() -> None:
    reply = Reply(response(b"b" * 200_000))
    async with serving(lambda request: reply) as server, sending(cap=100) as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
        await server.wait_ended(0)
        again = await sender.send(server.url, HEADERS, BODY)
    assert outcome.success and outcome.response_excerpt == "b" * 100
    assert again.success and server.where() == [(0, 0), (1, 0)]


async def test_endless_body_is_not_drained() -> None:
    written = 0

    async def endless(writer: asyncio.StreamWriter) -> None:
        nonlocal written
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
        while written < 1 << 30:
            writer.write(b"x" * 65536)
            await writer.drain()
            written += 65536

    async with serving(lambda request: Reply(stream=endless)) as server, sending(cap=300, timeout=10.0) as sender:
        with anyio.fail_after(5):
            outcome = await sender.send(server.url, HEADERS, BODY)
        await server.wait_ended(0)
    assert outcome.response_excerpt == "x" * 300 and written < 64 * 1024 * 1024


async def test_body_of_exactly_the_cap_keeps_the_connection() -> None:
    reply = Reply(response(b"e" * 100))
    async with serving(lambda request: reply) as server, sending(cap=100) as sender:
        for _ in range(2):
            assert (await sender.send(server.url, HEADERS, BODY)).response_excerpt == "e" * 100
    assert server.where() == [(0, 0), (0, 1)]


def chunked(*parts: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


async def test_chunked_body_is_decoded_and_the_connection_reused() -> None:
    reply = Reply(chunked(b"hello ", b"chunked ", b"world"))
    async with serving(lambda request: reply) as server, sending() as sender:
        outcomes = [await sender.send(server.url, HEADERS, BODY) for _ in range(2)]
    assert [o.response_excerpt for o in outcomes] == ["hello chunked world"] * 2
    assert server.where() == [(0, 0), (0, 1)]


async def test_chunked_body_over_the_cap_is_cut_and_the_connection_closed() -> None:
    reply = Reply(chunked(*[b"c" * 1000] * 50))
    async with serving(lambda request: reply) as server, sending(cap=1500) as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
        await server.wait_ended(0)
    assert outcome.response_excerpt == "c" * 1500


async def test_body_delimited_by_close_ends_at_eof() -> None:
    reply = Reply(response(b"read until the end", length=False), close=True)
    async with serving(lambda request: reply) as server, sending() as sender:
        outcomes = [await sender.send(server.url, HEADERS, BODY) for _ in range(2)]
    assert [o.response_excerpt for o in outcomes] == ["read until the end"] * 2
    assert server.where() == [(0, 0), (1, 0)]


async def test_truncated_body_with_a_length_is_an_error() -> None:
    reply = Reply(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nshort", close=True)
    async with serving(lambda request: reply) as server, sending() as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.error == (
        f"127.0.0.1:{server.port} closed the connection or sent an invalid response "
        "(server disconnected before a complete response)"
    )


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
    ],
)
async def test_compressed_body_excerpt_is_decompressed_up_to_the_cap(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    text = b"".join(b"line %d of a compressed answer\n" % i for i in range(5000))
    reply = Reply(response(compress(text), headers={"Content-Encoding": encoding}))
    async with serving(lambda request: reply) as server, sending(cap=100) as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.response_excerpt == text[:100].decode()


async def test_small_compressed_body_keeps_the_connection() -> None:
    reply = Reply(response(gzip.compress(b"short and sweet"), headers={"Content-Encoding": "gzip"}))
    async with serving(lambda request: reply) as server, sending() as sender:
        outcomes = [await sender.send(server.url, HEADERS, BODY) for _ in range(2)]
    assert [o.response_excerpt for o in outcomes] == ["short and sweet"] * 2
    assert server.connections == 1


async def test_undecodable_compressed_body_is_kept_raw() -> None:
    reply = Reply(response(b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    async with serving(lambda request: reply) as server, sending() as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.success and outcome.response_excerpt == "not gzip at all"


async def test_status_reason_headers_and_interim_responses() -> None:
    reply = Reply(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        + response(b"later", status="503 Slow Down", headers={"retry-AFTER": "7", "X-Seen": "yes"})
    )
    async with serving(lambda request: reply) as server:
        transport = Http1Transport(allowed_networks=LOOPBACK, timeout=2.0)
        try:
            status, reason, headers, body = await transport.exchange(
                "POST", httpx.URL(server.url), list(HEADERS.items()), BODY
            )
        finally:
            await transport.aclose()
    assert (status, reason, body) == (503, "Slow Down", b"later")
    assert headers["Retry-After"] == "7" and headers["x-seen"] == "yes"


async def test_endless_headers_are_cut_off() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000))
            await writer.drain()

    async with serving(lambda request: Reply(stream=endless)) as server, sending(timeout=10.0) as sender:
        with anyio.fail_after(5):
            outcome = await sender.send(server.url, HEADERS, BODY)
        await server.wait_ended(0)
    assert outcome.error == (
        f"127.0.0.1:{server.port} closed the connection or sent an invalid response "
        "(invalid HTTP response (headers too long))"
    )


async def test_invalid_response_is_a_protocol_error() -> None:
    async with serving(lambda request: Reply(b"HTTP/1.1 2xx Nope\r\n\r\n")) as server, sending() as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"127.0.0.1:{server.port} closed the connection or sent an invalid response (invalid HTTP response ("
    ), outcome.error


# --- timeouts and cancellation ----------------------------------------------------------------------------


async def test_read_timeout_when_the_server_never_answers() -> None:
    async with serving(lambda request: Reply(hang=True)) as server, sending(timeout=0.3) as sender:
        start = time.perf_counter()
        with anyio.fail_after(3):
            outcome = await sender.send(server.url, HEADERS, BODY)
        elapsed = time.perf_counter() - start
        await server.wait_ended(0)  # the timed-out connection was closed, not kept
    assert outcome.error == "timed out after 0.3s waiting for a response"
    assert 0.25 <= elapsed < 1.5


async def test_connect_timeout_against_a_full_backlog() -> None:
    """A listener whose accept queue is full drops our SYN: the connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue of one
    try:
        async with sending(timeout=0.3) as sender:
            start = time.perf_counter()
            with anyio.fail_after(3):
                outcome = await sender.send(f"http://127.0.0.1:{port}/hook", HEADERS, BODY)
            elapsed = time.perf_counter() - start
        assert outcome.error == f"timed out after 0.3s connecting to 127.0.0.1:{port}"
        assert 0.25 <= elapsed < 1.5
    finally:
        filler.close()
        listener.close()


async def test_cancellation_closes_the_connection_in_use() -> None:
    async with serving(lambda request: Reply(hang=True)) as server:
        transport = Http1Transport(allowed_networks=LOOPBACK, timeout=30.0)
        try:
            task = asyncio.create_task(transport.exchange("POST", httpx.URL(server.url), [], BODY))
            with anyio.fail_after(5):
                await server.got_request.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await server.wait_ended(0)
            assert transport._client is not None and transport._client.open_connections == 0
        finally:
            await transport.aclose()


async def test_aclose_closes_idle_connections() -> None:
    async with serving() as server:
        async with sending() as sender:
            assert (await sender.send(server.url, HEADERS, BODY)).success
        await server.wait_ended(0)


async def test_aclose_during_a_request_does_not_open_a_new_connection() -> None:
    """The aborted request looks like a stale keep-alive drop; it must not be retried after close."""

    def script(request: Request) -> Reply:
        return Reply(response(), hang=request.index == 1)

    async with serving(script) as server:
        transport = Http1Transport(allowed_networks=LOOPBACK, timeout=10.0)
        assert (await transport.exchange("POST", httpx.URL(server.url), [], BODY))[0] == 200
        task = asyncio.create_task(transport.exchange("POST", httpx.URL(server.url), [], BODY))
        with anyio.fail_after(5):
            while len(server.requests) < 2:
                await server.got_request.wait()
                server.got_request.clear()
        await transport.aclose()
        with pytest.raises(httpx.ConnectError, match="the transport was closed"), anyio.fail_after(5):
            await task
        await server.wait_ended(0)
    assert server.connections == 1


# --- the connection limit -----------------------------------------------------------------------------


async def test_max_connections_bounds_open_connections() -> None:
    """Five concurrent deliveries, two connections allowed: the other three wait and then reuse them."""
    async with serving(lambda request: Reply(response(), hang=True)) as server, sending(max_connections=2) as sender:
        sends = [asyncio.create_task(sender.send(server.url, HEADERS, BODY)) for _ in range(5)]
        with anyio.fail_after(5):
            while len(server.requests) < 2:
                await server.got_request.wait()
                server.got_request.clear()
        server.release.set()
        with anyio.fail_after(5):
            outcomes = await asyncio.gather(*sends)
    assert all(o.success for o in outcomes)
    assert server.connections == 2 and server.peak == 2 and len(server.requests) == 5


async def test_max_connections_closes_an_idle_connection_to_another_host() -> None:
    async with serving() as first, serving() as second, sending(max_connections=1) as sender:
        assert (await sender.send(first.url, HEADERS, BODY)).success
        assert (await sender.send(second.url, HEADERS, BODY)).success
        await first.wait_ended(0)


async def test_a_slot_wait_is_bounded_by_the_timeout() -> None:
    """With the only connection busy, a second request waits for it no longer than its timeout."""
    async with serving(lambda request: Reply(response(), hang=True)) as server:
        transport = Http1Transport(allowed_networks=LOOPBACK, timeout=10.0, max_connections=1)
        try:
            first = asyncio.create_task(transport.exchange("POST", httpx.URL(server.url), [], BODY))
            with anyio.fail_after(5):
                await server.got_request.wait()
            assert transport._client is not None
            transport._client._timeout = 0.3  # for the second request only
            start = time.perf_counter()
            with pytest.raises(httpx.ConnectTimeout, match="timed out connecting"), anyio.fail_after(3):
                await transport.exchange("POST", httpx.URL(server.url), [], BODY)
            assert 0.25 <= time.perf_counter() - start < 1.5
            server.release.set()
            with anyio.fail_after(5):
                assert (await first)[0] == 200
        finally:
            await transport.aclose()
    assert server.connections == 1 and len(server.requests) == 1


# --- names: the SSRF guard, address order, DNS cache --------------------------------------------------------


async def test_a_blocked_name_never_connects() -> None:
    resolver = StubResolver({NAME: ["127.0.0.1"]})
    async with serving() as server:
        url = f"http://{NAME}:{server.port}/hook"
        async with sending(allowed=[], resolver=resolver) as sender:
            outcome = await sender.send(url, HEADERS, BODY)
        transport = Http1Transport(allowed_networks=[], resolver=resolver)
        try:
            with pytest.raises(BlockedAddressError) as info:
                await transport.exchange("POST", httpx.URL(url), [], BODY)
            assert info.value.request.url == url
        finally:
            await transport.aclose()
    assert outcome.error == (
        f"blocked: {NAME} resolves to 127.0.0.1, a loopback address; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
    )
    assert server.connections == 0 and resolver.calls == [NAME, NAME]


async def test_addresses_are_tried_in_order() -> None:
    """127.0.0.3 refuses (nothing listens there), so the next answer is used."""
    async with serving() as server:
        resolver = StubResolver({NAME: ["127.0.0.3", "127.0.0.1"]})
        async with sending(resolver=resolver) as sender:
            outcome = await sender.send(f"http://{NAME}:{server.port}/hook", HEADERS, BODY)
    assert outcome.success, outcome.error
    assert server.requests[0].headers[0] == (b"Host", f"{NAME}:{server.port}".encode())


@pytest.mark.parametrize(("cache", "lookups"), [(60, 1), (None, 2)])
async def test_dns_cache_holds_checked_answers(cache: int | None, lookups: int) -> None:
    reply = Reply(response(headers={"Connection": "close"}))
    async with serving(lambda request: reply) as server:
        resolver = StubResolver({NAME: ["127.0.0.1"]})
        async with sending(resolver=resolver, dns_cache_seconds=cache) as sender:
            for _ in range(2):
                assert (await sender.send(f"http://{NAME}:{server.port}/hook", HEADERS, BODY)).success
    assert server.connections == 2 and len(resolver.calls) == lookups


# --- TLS -----------------------------------------------------------------------------------------------------


@dataclass
class Certificate:
    pem: bytes
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and NAME (cryptography; no trustme needed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook-mcp test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return Certificate(cert_path.read_bytes(), server)


async def test_tls_untrusted_certificate_is_a_tls_error(certificate: Certificate) -> None:
    async with serving(ssl_context=certificate.server) as server, sending() as sender:
        outcome = await sender.send(server.url, HEADERS, BODY)
    assert outcome.error == f"TLS error: certificate verify failed: self-signed certificate (127.0.0.1:{server.port})"
    assert server.requests == []


async def test_tls_succeeds_and_reuses_when_the_ca_is_trusted(certificate: Certificate) -> None:
    trusted = ssl.create_default_context(cadata=certificate.pem.decode())
    resolver = StubResolver({NAME: ["127.0.0.1"]})
    async with serving(ssl_context=certificate.server) as server, sending(ssl_context=trusted, resolver=resolver) as s:
        by_address = [await s.send(server.url, HEADERS, BODY) for _ in range(2)]
        by_name = await s.send(f"https://{NAME}:{server.port}/hook", HEADERS, BODY)
    assert all(o.success and o.response_excerpt == "ok" for o in [*by_address, by_name])
    assert server.where() == [(0, 0), (0, 1), (1, 0)]


async def test_tls_name_mismatch_is_a_tls_error(certificate: Certificate) -> None:
    trusted = ssl.create_default_context(cadata=certificate.pem.decode())
    resolver = StubResolver({"other.example.com": ["127.0.0.1"]})
    async with serving(ssl_context=certificate.server) as server, sending(ssl_context=trusted, resolver=resolver) as s:
        outcome = await s.send(f"https://other.example.com:{server.port}/hook", HEADERS, BODY)
    assert outcome.error is not None
    assert outcome.error.startswith("TLS error: certificate verify failed: Hostname mismatch"), outcome.error
