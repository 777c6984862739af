"""``POST /v1/events``, in process through ASGI and in a real ``serve --transport streamable-http``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from starlette.applications import Starlette
from starlette.routing import Route

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.api import EVENTS_PATH, events_endpoint

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
        (AUTH, b'{"type": 5, "data": []}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {}, "extra": 1}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.exploded", "data": {}}', 422, "invalid_event"),
        (AUTH, b'{"type": "order.created", "data": {"id": 5}}', 422, "invalid_event"),
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


def _serve(tmp_path: Path, transport: str) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MCP_API_TOKEN": TOKEN,
        "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "webhook_mcp.cli", "serve", "--transport", transport]
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_wait_until_listening, port, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(30):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def test_served_mcp_and_events_share_one_http_server(http_server: str) -> None:
    async with Client(f"{http_server}/mcp") as client:
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
        async with sse_client(f"{sse_server}/sse") as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"list_webhooks", "create_webhook", "test_webhook", "send_event"} <= names
            events = await session.call_tool("get_webhook_events", {})
            assert events.structured_content is not None and events.structured_content["total"] >= 15
