"""Tests for one delivery attempt: outcome shapes (respx), the HTTP/1.1 transport against a real local
receiver, and the SSRF address guard."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx
import pytest
import respx
from aiohttp import web

from webhook_mcp.core.signing import USER_AGENT, signed_headers
from webhook_mcp.delivery.sender import (
    BlockedAddressError,
    DNSError,
    Http1Transport,
    Network,
    Sender,
    SendOutcome,
    TLSError,
    blocked_reason,
)

URL = "https://hooks.example.com/webhook"
BODY = json.dumps({"type": "order.created", "data": {"id": 1}}).encode()
HEADERS = signed_headers(b"k" * 32, "msg_1", 1_700_000_000, BODY)
LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- respx: outcome shapes ------------------------------------------------------------------------


Effect = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


async def send_mock(effect: Effect, *, excerpt_bytes: int = 1024) -> SendOutcome:
    """One send through a respx router that answers every POST to URL with ``effect``."""
    router = respx.Router(assert_all_called=False)
    route = router.post(URL)
    if isinstance(effect, httpx.Response):
        route.mock(return_value=effect)
    else:
        route.mock(side_effect=effect)
    transport = httpx.MockTransport(router.handler)
    async with Sender(timeout=2.0, transport=transport, excerpt_bytes=excerpt_bytes) as sender:
        return await sender.send(URL, HEADERS, BODY)


@pytest.mark.anyio
async def test_200_success_with_excerpt() -> None:
    outcome = await send_mock(httpx.Response(200, text="thanks ✓"))
    assert outcome.success and outcome.status_code == 200
    assert outcome.error is None
    assert outcome.response_excerpt == "thanks ✓"
    assert outcome.retry_after is None and not outcome.gone
    assert outcome.response_ms >= 0 and round(outcome.response_ms, 1) == outcome.response_ms


@pytest.mark.anyio
async def test_204_success_empty() -> None:
    outcome = await send_mock(httpx.Response(204))
    assert outcome.success and outcome.status_code == 204
    assert outcome.error is None and outcome.response_excerpt == ""


@pytest.mark.anyio
async def test_request_carries_headers_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    await send_mock(handler)
    assert seen[0].method == "POST" and seen[0].content == BODY
    for name, value in HEADERS.items():
        assert seen[0].headers[name] == value


@pytest.mark.anyio
async def test_500_failure() -> None:
    outcome = await send_mock(httpx.Response(500, text="boom"))
    assert not outcome.success and outcome.status_code == 500
    assert outcome.error == "HTTP 500 Internal Server Error"
    assert outcome.response_excerpt == "boom"


@pytest.mark.anyio
async def test_302_reported_as_not_followed() -> None:
    outcome = await send_mock(httpx.Response(302, headers={"Location": "https://x.example/new"}))
    assert not outcome.success and outcome.status_code == 302
    assert outcome.error == (
        "HTTP 302 redirect to https://x.example/new (redirects are not followed; update the webhook URL)"
    )


@pytest.mark.anyio
async def test_relative_redirect_is_resolved_against_the_url() -> None:
    outcome = await send_mock(httpx.Response(308, headers={"Location": "/v2/webhook"}))
    assert outcome.error is not None
    assert outcome.error.startswith("HTTP 308 redirect to https://hooks.example.com/v2/webhook ")


@pytest.mark.anyio
async def test_410_gone() -> None:
    outcome = await send_mock(httpx.Response(410))
    assert outcome.gone and not outcome.success
    assert outcome.error == "HTTP 410 Gone"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(status: int) -> None:
    outcome = await send_mock(httpx.Response(status, headers={"Retry-After": "120"}))
    assert outcome.status_code == status and not outcome.success
    assert outcome.retry_after == 120.0


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(status: int) -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    outcome = await send_mock(httpx.Response(status, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    assert outcome.retry_after is not None
    assert 85 <= outcome.retry_after <= 91


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, "not-a-date", None),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        (500, "120", None),
        (429, None, None),
    ],
)
async def test_retry_after_edge_cases(status: int, value: str | None, expected: float | None) -> None:
    headers = {"Retry-After": value} if value is not None else {}
    outcome = await send_mock(httpx.Response(status, headers=headers))
    assert outcome.retry_after == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection refused by hooks.example.com:443"),
        (httpx.ConnectError("Network is unreachable"), "could not connect to hooks.example.com:443: Network"),
        (httpx.ConnectTimeout("timed out"), "timed out after 2.0s connecting to hooks.example.com:443"),
        (httpx.ReadTimeout("timed out"), "timed out after 2.0s waiting for a response"),
        (DNSError("Name or service not known"), "DNS lookup failed for hooks.example.com"),
        (TLSError("certificate verify failed: self-signed certificate"), "TLS error: certificate verify failed"),
        (
            BlockedAddressError(
                "blocked: 10.0.0.5 is a private address; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
            ),
            "blocked: 10.0.0.5 is a private address; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS",
        ),
        (httpx.RemoteProtocolError("Server disconnected"), "hooks.example.com:443 closed the connection"),
        (httpx.ReadError("connection reset"), "connection reset by hooks.example.com:443"),
    ],
)
async def test_transport_errors_become_outcomes(exc: Exception, expected: str) -> None:
    outcome = await send_mock(exc)
    assert not outcome.success and outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith(expected), outcome.error
    assert outcome.response_excerpt == "" and outcome.retry_after is None


@pytest.mark.anyio
async def test_excerpt_is_capped() -> None:
    outcome = await send_mock(httpx.Response(200, content=b"a" * 100_000), excerpt_bytes=1024)
    assert outcome.response_excerpt == "a" * 1024


@pytest.mark.anyio
async def test_excerpt_decodes_invalid_utf8_with_replacement() -> None:
    outcome = await send_mock(httpx.Response(500, content=b"bad \xff byte"))
    assert outcome.response_excerpt == "bad \ufffd byte"


@pytest.mark.anyio
async def test_unexpected_exception_becomes_outcome() -> None:
    outcome = await send_mock(ValueError("kaboom"))
    assert not outcome.success and outcome.status_code is None
    assert outcome.error == "unexpected error: ValueError: kaboom"


@pytest.mark.anyio
async def test_invalid_url_becomes_outcome() -> None:
    async with Sender(timeout=1.0, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as sender:
        outcome = await sender.send("http://exa\x00mple.com/", HEADERS, BODY)
    assert not outcome.success and outcome.error is not None
    assert outcome.error.startswith("invalid webhook URL")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "expected"), [("ftp://example.com/", "unsupported URL scheme 'ftp'"), ("http://", "no host")]
)
async def test_unusable_url_becomes_outcome(sender: Sender, url: str, expected: str) -> None:
    outcome = await sender.send(url, HEADERS, BODY)
    assert outcome.error is not None and expected in outcome.error, outcome.error


@pytest.mark.anyio
async def test_streamed_response_from_other_transport_is_read_up_to_cap() -> None:
    closed = anyio.Event()

    class Stream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for _ in range(1000):
                yield b"x" * 100

        async def aclose(self) -> None:
            closed.set()

    class StreamingTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, stream=Stream(), request=request)

    async with Sender(timeout=1.0, transport=StreamingTransport(), excerpt_bytes=250) as sender:
        outcome = await sender.send(URL, HEADERS, BODY)
    assert outcome.response_excerpt == "x" * 250
    assert closed.is_set()


@pytest.mark.anyio
async def test_hanging_transport_hits_backstop() -> None:
    class Hanging(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await anyio.Event().wait()
            raise AssertionError("unreachable")

    with anyio.fail_after(5):
        async with Sender(timeout=0.2, transport=Hanging()) as sender:
            outcome = await sender.send(URL, HEADERS, BODY)
    assert outcome.error == "timed out after 0.2s waiting for a response"


@pytest.mark.anyio
async def test_cancellation_propagates() -> None:
    started = anyio.Event()

    class Hanging(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            started.set()
            await anyio.Event().wait()
            raise AssertionError("unreachable")

    results: list[object] = []
    async with Sender(timeout=30, transport=Hanging()) as sender, anyio.create_task_group() as tg:

        async def run() -> None:
            results.append(await sender.send(URL, HEADERS, BODY))

        tg.start_soon(run)
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    assert results == []


# --- blocked_reason -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "shared/CGNAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_blocked_reason_blocks(address: str, reason: str) -> None:
    result = blocked_reason(ipaddress.ip_address(address), [])
    assert result is not None and reason in result


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"])
def test_blocked_reason_allows_public(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address), []) is None


def test_blocked_reason_allowed_networks() -> None:
    assert blocked_reason(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    # the mapped form is opened by its own IPv6 range, not by the IPv4 one it carries
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK) == "loopback address"
    mapped = [ipaddress.ip_network("::ffff:127.0.0.0/104")]
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"), mapped) is None
    assert blocked_reason(ipaddress.ip_address("10.0.0.1"), LOOPBACK) is not None
    assert blocked_reason(ipaddress.ip_address("::1"), [ipaddress.ip_network("::1/128")]) is None


# --- real receiver (aiohttp.web on 127.0.0.1) ---------------------------------------------------------


@dataclass
class Receiver:
    base: str
    port: int
    received: list[tuple[dict[str, str], bytes, list[tuple[str, str]]]] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(base="", port=0)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        state.received.append((dict(request.headers), body, list(request.headers.items())))
        return web.Response(text="ok")

    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        state.received.append(({}, b"followed", []))
        return web.Response(text="should not get here")

    async def slow(request: web.Request) -> web.Response:
        await state.release.wait()
        return web.Response(text="late")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10 * 1024 * 1024
        await response.prepare(request)
        chunk = b"b" * 65536
        for _ in range(160):
            await response.write(chunk)
        return response

    async def gzipped(request: web.Request) -> web.Response:
        response = web.Response(text="compressed " * 200)
        response.enable_compression(web.ContentCoding.gzip)
        return response

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410, text="no such hook")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/redirect", redirect)
    app.router.add_route("*", "/elsewhere", elsewhere)
    app.router.add_post("/slow", slow)
    app.router.add_post("/big", big)
    app.router.add_post("/gone", gone)
    app.router.add_post("/gzip", gzipped)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{state.port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    async with Sender(timeout=1.0, allowed_networks=LOOPBACK, excerpt_bytes=1024) as s:
        yield s


@pytest.mark.anyio
async def test_real_receiver_gets_exact_headers_and_body(receiver: Receiver, sender: Sender) -> None:
    outcome = await sender.send(receiver.url("/hook"), HEADERS, BODY)
    assert outcome.success and outcome.status_code == 200 and outcome.response_excerpt == "ok"
    headers, body, items = receiver.received[0]
    assert body == BODY
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, value in HEADERS.items():
        assert lowered[name] == value
    assert lowered["user-agent"] == USER_AGENT
    assert lowered["content-type"] == "application/json"
    assert lowered["content-length"] == str(len(BODY))
    names = [k.lower() for k, _ in items]
    assert names.count("user-agent") == 1 and names.count("content-type") == 1
    assert "accept-encoding" not in names and "cookie" not in names
    assert "aiohttp" not in json.dumps(headers).lower()


@pytest.mark.anyio
async def test_connection_is_reused(receiver: Receiver, sender: Sender) -> None:
    for _ in range(5):
        outcome = await sender.send(receiver.url("/hook"), HEADERS, BODY)
        assert outcome.success
    assert len(receiver.received) == 5


@pytest.mark.anyio
async def test_real_redirect_not_followed(receiver: Receiver, sender: Sender) -> None:
    outcome = await sender.send(receiver.url("/redirect"), HEADERS, BODY)
    assert outcome.status_code == 302 and not outcome.success
    assert outcome.error == (
        f"HTTP 302 redirect to {receiver.base}/elsewhere (redirects are not followed; update the webhook URL)"
    )
    assert receiver.received == []


@pytest.mark.anyio
async def test_real_410(receiver: Receiver, sender: Sender) -> None:
    outcome = await sender.send(receiver.url("/gone"), HEADERS, BODY)
    assert outcome.gone and outcome.error == "HTTP 410 Gone" and outcome.response_excerpt == "no such hook"


@pytest.mark.anyio
async def test_real_timeout(receiver: Receiver, sender: Sender) -> None:
    start = time.perf_counter()
    with anyio.fail_after(2.5):
        outcome = await sender.send(receiver.url("/slow"), HEADERS, BODY)
    elapsed = time.perf_counter() - start
    assert outcome.error == "timed out after 1.0s waiting for a response"
    assert outcome.status_code is None and 0.9 <= elapsed < 2.0
    assert 900 <= outcome.response_ms < 2000


@pytest.mark.anyio
async def test_accepting_but_silent_socket_times_out() -> None:
    """A peer that completes the TCP handshake but never reads or answers must not hang the sender."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        async with Sender(timeout=0.5, allowed_networks=LOOPBACK) as sender:
            with anyio.fail_after(2.0):
                outcome = await sender.send(f"http://127.0.0.1:{port}/", HEADERS, BODY)
        assert outcome.error == "timed out after 0.5s waiting for a response"
    finally:
        listener.close()


@pytest.mark.anyio
async def test_connection_refused(sender: Sender) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    outcome = await sender.send(f"http://127.0.0.1:{port}/hook", HEADERS, BODY)
    assert outcome.error == f"connection refused by 127.0.0.1:{port}"
    assert outcome.status_code is None and not outcome.success


@pytest.mark.anyio
async def test_big_body_read_only_up_to_cap(receiver: Receiver) -> None:
    async with Sender(timeout=5.0, allowed_networks=LOOPBACK, excerpt_bytes=300) as sender:
        with anyio.fail_after(5):
            outcome = await sender.send(receiver.url("/big"), HEADERS, BODY)
            # The half-read connection was dropped, not returned to the pool in a bad state.
            again = await sender.send(receiver.url("/hook"), HEADERS, BODY)
    assert outcome.success and outcome.response_excerpt == "b" * 300
    assert again.success and again.response_excerpt == "ok"


@pytest.mark.anyio
async def test_transport_returns_capped_httpx_response(receiver: Receiver) -> None:
    transport = Http1Transport(allowed_networks=LOOPBACK, timeout=5.0, max_body_bytes=100)
    try:
        request = httpx.Request("POST", receiver.url("/big"), headers=HEADERS, content=BODY)
        response = await transport.handle_async_request(request)
    finally:
        await transport.aclose()
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.content == b"b" * 100
    assert response.headers["content-length"] == str(10 * 1024 * 1024)


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_blocked_without_allow_list(receiver: Receiver, host: str) -> None:
    async with Sender(timeout=2.0) as sender:
        outcome = await sender.send(receiver.url("/hook", host=host), HEADERS, BODY)
    assert not outcome.success and outcome.status_code is None
    expected = {
        "127.0.0.1": "blocked: 127.0.0.1 is a loopback address",
        "localhost": "blocked: localhost resolves to 127.0.0.1, a loopback address",
    }[host]
    assert outcome.error == f"{expected}; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
    assert receiver.received == []


@pytest.mark.anyio
async def test_blocked_transport_raises_blocked_address_error(receiver: Receiver) -> None:
    transport = Http1Transport(allowed_networks=[])
    try:
        for host in ("127.0.0.1", "localhost"):
            request = httpx.Request("POST", receiver.url("/hook", host=host), content=BODY)
            with pytest.raises(BlockedAddressError, match="loopback"):
                await transport.handle_async_request(request)
    finally:
        await transport.aclose()


@pytest.mark.anyio
async def test_ipv6_literal_blocked() -> None:
    async with Sender(timeout=2.0) as sender:
        outcome = await sender.send("http://[::1]:9/hook", HEADERS, BODY)
        metadata = await sender.send("http://169.254.169.254/latest/meta-data/", HEADERS, BODY)
    assert outcome.error == "blocked: ::1 is a loopback address; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
    assert metadata.error == (
        "blocked: 169.254.169.254 is a link-local (cloud metadata) address; "
        "allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_allowed_with_allow_list(receiver: Receiver, sender: Sender, host: str) -> None:
    outcome = await sender.send(receiver.url("/hook", host=host), HEADERS, BODY)
    assert outcome.success, outcome.error
    assert len(receiver.received) == 1


@pytest.mark.anyio
async def test_dns_failure(sender: Sender) -> None:
    with anyio.fail_after(5):
        outcome = await sender.send("http://nosuch.invalid/", HEADERS, BODY)
    assert outcome.error is not None
    assert outcome.error.startswith("DNS lookup failed for nosuch.invalid"), outcome.error
    assert outcome.status_code is None


@pytest.mark.anyio
async def test_tls_error_against_plain_http_server(receiver: Receiver, sender: Sender) -> None:
    outcome = await sender.send(f"https://127.0.0.1:{receiver.port}/hook", HEADERS, BODY)
    assert outcome.error is not None and outcome.error.startswith("TLS error: "), outcome.error


@pytest.mark.anyio
async def test_compressed_response_is_decoded_once(receiver: Receiver) -> None:
    async with Sender(timeout=2.0, allowed_networks=LOOPBACK, excerpt_bytes=22) as sender:
        outcome = await sender.send(receiver.url("/gzip"), HEADERS, BODY)
    assert outcome.success, outcome.error
    assert outcome.response_excerpt == "compressed compressed "
