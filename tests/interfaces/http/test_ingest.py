"""``POST /v1/events``, in process through ASGI and in a real ``serve --transport streamable-http``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.routing import Route

from conftest import make_settings, wait_until_serving
from webhook_mcp import ConfigurationError, Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.http.auth import is_loopback
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH, events_endpoint

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(sqlite_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    async with Hub.open(make_settings(sqlite_url, max_payload_bytes=4096), dispatch=False) as hub:
        app = Starlette(routes=[Route(EVENTS_PATH, events_endpoint(hub, TOKEN), methods=["POST"])])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, hub


def order(hub: Hub) -> dict[str, Any]:
    return dict(hub.catalog.get("order.created").example)


async def test_publish_returns_202_with_the_event(api: tuple[httpx.AsyncClient, Hub]) -> None:
    client, hub = api
    created = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
    response = await client.post(
        EVENTS_PATH, json={"type": "order.created", "data": order(hub), "idempotency_key": "k1"}, headers=AUTH
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["event_id"].startswith("evt_") and body["queued"] == 1 and body["duplicate"] is False
    again = await client.post(
        EVENTS_PATH, json={"type": "order.created", "data": order(hub), "idempotency_key": "k1"}, headers=AUTH
    )
    assert again.json()["event_id"] == body["event_id"] and again.json()["duplicate"] is True
    assert (await hub.service.get_stats(created.id)).pending_deliveries == 1


@pytest.mark.parametrize(
    ("headers", "content", "status", "code"),
    [
        ({}, b'{"type": "order.created", "data": {}}', 401, "unauthorized"),
        ({"authorization": "Bearer wrong"}, b'{"type": "order.created", "data": {}}', 401, "unauthorized"),
        (AUTH, b"{not json", 400, "invalid_json"),
        (AUTH, b"[1, 2]", 400, "invalid_body"),
        (AUTH, b"[" * 2000 + b"]" * 2000, 400, "invalid_json"),
        (AUTH, b'{"type": "customer.created", "data": {"id": "\\ud800"}}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {}, "idempotency_key": "a\\u0000b"}', 422, "invalid_event"),
        (AUTH, b'{"type": 5, "data": []}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {}, "extra": 1}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.exploded", "data": {}}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {"id": 5.5}}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {"id": NaN}}', 400, "invalid_json"),
        (AUTH, b'{"type": "order.created", "data": {"x": "' + b"a" * 5000 + b'"}}', 413, "too_large"),
    ],
)
async def test_bad_requests_get_json_errors(
    api: tuple[httpx.AsyncClient, Hub], headers: dict[str, str], content: bytes, status: int, code: str
) -> None:
    client, _ = api
    response = await client.post(EVENTS_PATH, content=content, headers={**headers, "content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"extra": NaN}', "data.extra: NaN is not JSON; send a number or null"),
        (b'{"a": {"b": [0, Infinity]}}', "data.a.b[1]: Infinity is not JSON; send a number or null"),
        (b'{"odd key": -Infinity}', 'data["odd key"]: -Infinity is not JSON; send a number or null'),
        (b'{"big": 1e400}', "data.big: 1e400 is too large for a JSON number"),
    ],
)
async def test_non_standard_json_numbers_are_refused_with_their_path(
    api: tuple[httpx.AsyncClient, Hub], data: bytes, message: str
) -> None:
    client, hub = api
    created = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
    content = b'{"type": "order.created", "data": ' + data + b"}"
    response = await client.post(EVENTS_PATH, content=content, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and message in error["message"]
    assert (await hub.service.get_stats(created.id)).pending_deliveries == 0


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json; charset=latin-1",
        "",
    ],
)
async def test_events_need_a_json_content_type(api: tuple[httpx.AsyncClient, Hub], content_type: str | None) -> None:
    """A body that is not declared JSON gets 415 (after the token check) and publishes nothing."""
    client, hub = api
    created = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
    body = json.dumps({"type": "order.created", "data": order(hub)}).encode()
    headers = dict(AUTH) if content_type is None else {**AUTH, "content-type": content_type}
    response = await client.post(EVENTS_PATH, content=body, headers=headers)  # bytes: no Content-Type added
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and "Content-Type: application/json" in error["message"]
    assert (await hub.service.get_stats(created.id)).pending_deliveries == 0
    unauthenticated = await client.post(EVENTS_PATH, content=body, headers={"content-type": "text/plain"})
    assert unauthenticated.status_code == 401


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", 'Application/JSON;Charset="UTF-8"']
)
async def test_events_accept_json_with_or_without_a_utf8_charset(
    api: tuple[httpx.AsyncClient, Hub], content_type: str
) -> None:
    client, hub = api
    body = json.dumps({"type": "order.created", "data": order(hub)}).encode()
    response = await client.post(EVENTS_PATH, content=body, headers={**AUTH, "content-type": content_type})
    assert response.status_code == 202, response.text


async def test_schema_errors_are_listed(api: tuple[httpx.AsyncClient, Hub]) -> None:
    client, hub = api
    data = order(hub)
    del data["id"]
    response = await client.post(EVENTS_PATH, json={"type": "order.created", "data": data}, headers=AUTH)
    assert response.status_code == 422
    assert any("id" in problem for problem in response.json()["error"]["problems"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path, "streamable-http")


@pytest.fixture
def sse_server(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path, "sse")


def _serve(tmp_path: Path, transport: str, **env_overrides: str) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MCP_API_TOKEN": TOKEN,
        "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
        **env_overrides,
    }
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "serve", "--transport", transport]
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(wait_until_serving, port, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


serving = contextlib.contextmanager(_serve)


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str | None = TOKEN) -> AsyncIterator[Client]:
    """An ``mcp.Client`` over streamable HTTP that sends the bearer token (if any) on every request."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_served_mcp_and_events_share_one_http_server(http_server: str) -> None:
    async with mcp_session(f"{http_server}/mcp") as client:
        created = await client.call_tool("create_webhook", {"url": "https://example.com/in", "events": ["order.paid"]})
        assert not created.is_error, created.content
        webhook_id = created.structured_content["id"]  # type: ignore[index]
        sample = await client.call_tool("get_webhook_sample_payload", {"event": "order.paid"})
        data = sample.structured_content["body"]["data"]  # type: ignore[index]
        async with httpx.AsyncClient(base_url=http_server) as http:
            denied = await http.post(EVENTS_PATH, json={"type": "order.paid", "data": data})
            assert denied.status_code == 401
            accepted = await http.post(EVENTS_PATH, json={"type": "order.paid", "data": data}, headers=AUTH)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["queued"] == 1
        stats = await client.call_tool("get_webhook_stats", {"id": webhook_id})
        counts = stats.structured_content
        assert counts is not None
        assert counts["pending_deliveries"] + counts["failed_deliveries"] + counts["succeeded_deliveries"] >= 1


async def test_sse_transport_serves_the_tools(sse_server: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    with anyio.fail_after(30):
        async with (
            sse_client(f"{sse_server}/sse", headers=AUTH) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"list_webhooks", "create_webhook", "test_webhook", "send_event"} <= names
            events = await session.call_tool("get_webhook_events", {})
            assert events.structured_content is not None and events.structured_content["total"] >= 15


# --- the token and DNS-rebinding protection on the served transports --------------------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def assert_unauthorized(response: httpx.Response, *, wrong: bool) -> None:
    assert response.status_code == 401, (response.request.url, response.status_code, response.text)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and ('error="invalid_token"' in challenge) is wrong
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert "Authorization: Bearer <token>" in error["message"] and "WEBHOOK_MCP_API_TOKEN" in error["message"]
    assert TOKEN not in response.text


async def test_streamable_http_needs_the_token_on_every_route(http_server: str) -> None:
    async with httpx.AsyncClient(base_url=http_server, timeout=10) as http:
        for headers, wrong in (
            ({}, False),
            ({"authorization": "Bearer wrong"}, True),
            ({"authorization": TOKEN}, False),
        ):
            assert_unauthorized(
                await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}), wrong=wrong
            )
            assert_unauthorized(await http.get("/mcp", headers=headers), wrong=wrong)
            assert_unauthorized(await http.post(EVENTS_PATH, json={"type": "order.paid"}, headers=headers), wrong=wrong)
            assert_unauthorized(await http.get("/anything-else", headers=headers), wrong=wrong)
        right = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **AUTH})
        assert right.status_code == 200, right.text
    async with mcp_session(f"{http_server}/mcp") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"list_webhooks", "create_webhook", "send_event"} <= names


async def test_sse_needs_the_token_on_the_stream_and_the_message_endpoint(sse_server: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    async with httpx.AsyncClient(base_url=sse_server, timeout=10) as http:
        for headers, wrong in (({}, False), ({"authorization": "Bearer wrong"}, True)):
            assert_unauthorized(await http.get("/sse", headers=headers), wrong=wrong)
            message = await http.post("/messages/?session_id=" + "0" * 32, json=INITIALIZE, headers=headers)
            assert_unauthorized(message, wrong=wrong)
            assert_unauthorized(await http.post(EVENTS_PATH, json={}, headers=headers), wrong=wrong)
        # With the token the request reaches the transport, which knows no such session.
        unknown_session = await http.post("/messages/?session_id=" + "0" * 32, json=INITIALIZE, headers=AUTH)
        assert unknown_session.status_code == 404, unknown_session.text
    with anyio.fail_after(30):
        async with (
            sse_client(f"{sse_server}/sse", headers=AUTH) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert "get_webhook_logs" in {tool.name for tool in (await session.list_tools()).tools}


@pytest.fixture(params=["streamable-http", "sse"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real server of either transport, with the path of its MCP endpoint."""
    path = "/mcp" if request.param == "streamable-http" else "/messages/?session_id=" + "0" * 32
    with serving(tmp_path, request.param) as base:
        yield base, path


async def test_foreign_host_and_origin_are_refused_even_with_the_token(served: tuple[str, str]) -> None:
    base, mcp_path = served
    port = base.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for path in (mcp_path, EVENTS_PATH):
            rebound = await http.post(
                path, json=INITIALIZE, headers={**MCP_HEADERS, **AUTH, "host": f"evil.example:{port}"}
            )
            assert rebound.status_code == 421, rebound.text
            assert rebound.json()["error"]["code"] == "host_not_allowed"
            assert "WEBHOOK_MCP_ALLOWED_HOSTS" in rebound.json()["error"]["message"]
            wrong_port = await http.post(path, json={}, headers={**AUTH, "host": "127.0.0.1:1"})
            assert wrong_port.status_code == 421
            foreign = await http.post(path, json={}, headers={**AUTH, "origin": "http://evil.example"})
            assert foreign.status_code == 403, foreign.text
            assert foreign.json()["error"]["code"] == "origin_not_allowed"
            assert (await http.post(path, json={}, headers={**AUTH, "origin": "null"})).status_code == 403
        for host, origin in (
            (f"localhost:{port}", f"http://localhost:{port}"),
            (f"127.0.0.1:{port}", "http://localhost:6274"),
            (f"[::1]:{port}", "https://127.0.0.1:3000"),
        ):
            ok = await http.post(
                EVENTS_PATH, json={"type": "order.paid"}, headers={**AUTH, "host": host, "origin": origin}
            )
            assert ok.status_code == 422, ok.text


async def test_loopback_without_a_token_serves_mcp_but_not_the_ingest_route(tmp_path: Path) -> None:
    with serving(tmp_path, "streamable-http", WEBHOOK_MCP_API_TOKEN="") as base:
        async with mcp_session(f"{base}/mcp", token=None) as client:
            assert "list_webhooks" in {tool.name for tool in (await client.list_tools()).tools}
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            off = await http.post(EVENTS_PATH, json={"type": "order.paid", "data": {}})
            assert off.status_code == 404 and off.json()["error"]["code"] == "publishing_off"
            assert "WEBHOOK_MCP_API_TOKEN" in off.json()["error"]["message"]
            assert (await http.post("/mcp", json={}, headers={"host": "evil.example"})).status_code == 421


async def test_read_only_server_lists_only_read_tools_and_has_no_ingest_route(tmp_path: Path) -> None:
    with serving(tmp_path, "streamable-http", WEBHOOK_MCP_READ_ONLY="1") as base:
        async with mcp_session(f"{base}/mcp") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "list_webhooks" in names and "get_webhook_stats" in names
            assert not names & {"create_webhook", "delete_webhook", "send_event", "get_webhook_secret"}
            assert "read-only" in (client.instructions or "")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.post(EVENTS_PATH, json={"type": "order.paid", "data": {}}, headers=AUTH)
            assert response.status_code == 404 and "read-only" in response.json()["error"]["message"]


# --- the guard in process, for binds a test should not really make ------------------------------------


@contextlib.asynccontextmanager
async def guarded(sqlite_url: str, host: str, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    async with Hub.open(make_settings(sqlite_url, **settings), dispatch=False) as hub:
        app = create_http_app(hub, "streamable-http", host, 8000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mcp.example.com") as client:
            yield client, hub


async def test_a_public_bind_accepts_only_the_listed_hosts_and_origins(sqlite_url: str) -> None:
    async with guarded(
        sqlite_url,
        "0.0.0.0",
        api_token=TOKEN,
        allowed_hosts=["mcp.example.com", "10.1.2.3:*"],
        allowed_origins=["https://app.example.com"],
    ) as (client, _):
        body = {"type": "order.paid"}
        for host in ("mcp.example.com", "10.1.2.3:8443", "0.0.0.0:8000"):
            assert (await client.post(EVENTS_PATH, json=body, headers={**AUTH, "host": host})).status_code == 422
        for host in ("127.0.0.1:8000", "localhost:8000", "mcp.example.com:8000", "evil.example", "10.1.2.3"):
            assert (await client.post(EVENTS_PATH, json=body, headers={**AUTH, "host": host})).status_code == 421
        allowed = await client.post(EVENTS_PATH, json=body, headers={**AUTH, "origin": "https://app.example.com"})
        assert allowed.status_code == 422
        for origin in ("https://app.example.com.evil", "http://app.example.com", "http://localhost:6274"):
            refused = await client.post(EVENTS_PATH, json=body, headers={**AUTH, "origin": origin})
            assert refused.status_code == 403, origin
        assert (await client.post(EVENTS_PATH, json=body)).status_code == 401
        assert (await client.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)).status_code == 401
        lowercase_scheme = await client.post(EVENTS_PATH, json=body, headers={"authorization": f"bearer {TOKEN}"})
        assert lowercase_scheme.status_code == 422


async def test_a_public_bind_without_a_token_is_refused(sqlite_url: str) -> None:
    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        for host in ("0.0.0.0", "::", "192.0.2.7", "mcp.example.com"):
            with pytest.raises(ConfigurationError, match="WEBHOOK_MCP_API_TOKEN"):
                create_http_app(hub, "sse", host, 8000)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("localhost.evil.example", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
