"""The HTTP server ``serve`` runs, probed over real sockets: request heads are bounded in size, field
count and time, refused without reading the rest, while ordinary traffic (keep-alive, pipelining,
large bodies) is untouched; and the access log of a served request never shows a query value."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conftest import wait_until
from webhook_mcp.interfaces.http.server import MAX_HEAD_BYTES, MAX_HEADERS, limited_protocol, redact_query

pytestmark = pytest.mark.anyio

HEAD_TIMEOUT = 0.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body), "headers": len(request.headers)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """A real uvicorn server with the limited protocol on 127.0.0.1 (short header timeout)."""
    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    chosen = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=chosen, log_level="error", http=limited_protocol(head_timeout=HEAD_TIMEOUT)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    try:
        yield chosen
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, request: bytes, *, responses: int = 1) -> list[bytes]:
    """Send raw bytes (tolerating a server that closes early) and read ``responses`` responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(request)
            await writer.drain()
        with anyio.fail_after(10):
            return [await read_response(reader) for _ in range(responses)]
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def get(headers: bytes = b"", target: bytes = b"/", host: bytes = b"127.0.0.1") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + headers + b"\r\n"


async def test_a_head_over_the_limit_gets_431_and_the_rest_is_never_read(port: int) -> None:
    huge = get(b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n")
    (response,) = await exchange(port, huge)
    assert response.startswith(b"HTTP/1.1 431 ")
    assert b"headers_too_large" in response and b"connection: close" in response
    (long_line,) = await exchange(port, get(target=b"/?" + b"q" * (MAX_HEAD_BYTES + 10)))
    assert long_line.startswith(b"HTTP/1.1 431 ")
    (fine,) = await exchange(port, get())  # the server is still serving
    assert fine.startswith(b"HTTP/1.1 200 ")


async def test_a_head_just_under_the_limit_and_a_large_body_are_served(port: int) -> None:
    filler = b"a" * (MAX_HEAD_BYTES - 200)
    (response,) = await exchange(port, get(b"X-Fill: " + filler + b"\r\n"))
    assert response.startswith(b"HTTP/1.1 200 ")
    body = b"b" * (3 * MAX_HEAD_BYTES)  # sent with the head in one write: only the head is bounded
    post = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    (response,) = await exchange(port, post)
    assert response.startswith(b"HTTP/1.1 200 ") and b'"bytes":%d' % len(body) in response


async def test_too_many_header_fields_get_431(port: int) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % n for n in range(MAX_HEADERS))  # plus Host: one too many
    (response,) = await exchange(port, get(fields))
    assert response.startswith(b"HTTP/1.1 431 ") and b"header fields" in response
    (allowed,) = await exchange(port, get(fields[: fields.rindex(b"X-F")]))
    assert allowed.startswith(b"HTTP/1.1 200 ") and b'"headers":%d' % MAX_HEADERS in allowed


async def test_keep_alive_and_pipelined_requests_each_get_a_fresh_allowance(port: int) -> None:
    """Each request's head is counted on its own: many heads on one connection are fine."""
    one = get(b"X-Fill: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n")
    responses = await exchange(port, one * 6, responses=6)
    assert all(response.startswith(b"HTTP/1.1 200 ") for response in responses)


async def test_a_dripped_head_is_answered_408_and_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in get(b"X-Slow: " + b"s" * 1000 + b"\r\n"):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.02)  # pacing the attacker, not waiting for the server

    dripping = asyncio.create_task(drip())
    try:
        with anyio.fail_after(HEAD_TIMEOUT + 5):
            response = await read_response(reader)
            assert await reader.read() == b""  # and the connection is closed
    finally:
        dripping.cancel()
        writer.close()
    assert response.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in response
    assert time.monotonic() - started < HEAD_TIMEOUT + 2


async def test_a_silent_connection_is_closed_after_the_header_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with anyio.fail_after(HEAD_TIMEOUT + 5):
            assert (await read_response(reader)).startswith(b"HTTP/1.1 408 ")
    finally:
        writer.close()


def test_redact_query_keeps_names_and_hides_values() -> None:
    assert redact_query("/mcp?token=abc&x=1") == "/mcp?token=***&x=***"
    assert redact_query("/messages/?session_id=0f3a;api_key=k") == "/messages/?session_id=***;api_key=***"
    assert redact_query("/v1/events") == "/v1/events"
    assert redact_query("/a?flag") == "/a?flag"


def test_the_access_log_of_a_served_request_shows_no_query_values(tmp_path: Path) -> None:
    """A real ``serve``: a token sent in the query string is refused and never reaches the log, and
    a head over the limit is refused there too."""
    port = free_port()
    env = {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "WEBHOOK_MCP_API_TOKEN": "the-real-token",
        "WEBHOOK_MCP_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "serve", "--transport", "streamable-http"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-dispatcher"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "server exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not start listening"
                time.sleep(0.05)
        secret = "leaked-token-value-1234"
        probe = get(target=f"/mcp?access_token={secret}&token={secret}".encode(), host=f"127.0.0.1:{port}".encode())
        (refused,) = anyio.run(exchange, port, probe)
        assert refused.startswith(b"HTTP/1.1 401 ")
        (too_big,) = anyio.run(exchange, port, get(b"X-Big: " + b"a" * (2 * MAX_HEAD_BYTES) + b"\r\n"))
        assert too_big.startswith(b"HTTP/1.1 431 ")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    log = output.decode()  # uvicorn writes its access log to stdout, the rest to stderr
    assert "/mcp?access_token=***&token=***" in log and " 401" in log, log
    assert secret not in log
