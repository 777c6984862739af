"""The MCP endpoint of a real ``serve --transport streamable-http``, reached with tenant tokens
through ``mcp.Client``: each token sees its own tenant's webhooks, and another tenant's id is
"not found" in exactly the words of an id that does not exist."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import make_settings, process_env, wait_until_serving
from webhook_mcp import Hub
from webhook_mcp.service.tenants import TenantOperations

pytestmark = pytest.mark.anyio

ADMIN = "admin-token"
EVENT = "order.created"
MISSING = 999_999


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(database_url: str, transport: str = "streamable-http") -> Iterator[str]:
    port = _free_port()
    env = process_env(database_url, WEBHOOK_MCP_API_TOKEN=ADMIN, WEBHOOK_MCP_LOG_LEVEL="WARNING")
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "serve", "--transport", transport]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-dispatcher"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(wait_until_serving, port, process)
        yield f"http://127.0.0.1:{port}/" + ("mcp" if transport == "streamable-http" else "sse")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def _seed(database_url: str) -> dict[str, Any]:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        ops = TenantOperations(hub.store)
        seeded: dict[str, Any] = {}
        for name in ("shop-a", "shop-b"):
            tenant = await ops.create(name)
            hook = await hub.service.for_tenant(tenant.id).create_webhook(f"https://{name}.example/in", [EVENT])
            seeded[name] = {"hook": hook.id, "token": (await ops.issue_token(name)).token}
        return seeded


async def test_a_tenant_token_reaches_only_its_tenants_webhooks_over_mcp(database_url: str) -> None:
    seeded = await _seed(database_url)
    a, b = seeded["shop-a"], seeded["shop-b"]
    with serving(database_url) as url:
        async with mcp_session(url, a["token"]) as client:
            listed = await client.call_tool("list_webhooks", {})
            assert not listed.is_error, _text(listed)
            assert [w["id"] for w in listed.structured_content["webhooks"]] == [a["hook"]]  # type: ignore[index]
            for tool in ("get_webhook", "get_webhook_stats", "get_webhook_secret", "delete_webhook"):
                theirs = await client.call_tool(tool, {"id": b["hook"]})
                missing = await client.call_tool(tool, {"id": MISSING})
                assert theirs.is_error and missing.is_error, tool
                assert "not found" in _text(missing) or "no webhook with id" in _text(missing)
                assert _text(theirs).replace(str(b["hook"]), "<id>") == _text(missing).replace(str(MISSING), "<id>")
            created = await client.call_tool("create_webhook", {"url": "https://a2.example/in", "events": [EVENT]})
            assert not created.is_error, _text(created)
        async with mcp_session(url, b["token"]) as client:
            listed = await client.call_tool("list_webhooks", {})
            assert [w["id"] for w in listed.structured_content["webhooks"]] == [b["hook"]]  # type: ignore[index]
        async with mcp_session(url, ADMIN) as client:
            listed = await client.call_tool("list_webhooks", {})
            assert len(listed.structured_content["webhooks"]) == 3  # type: ignore[index]


async def _rpc(http: Any, url: str, token: str, session: str | None, body: dict[str, Any]) -> Any:
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
    }
    if session:
        headers["mcp-session-id"] = session
    return await http.post(url, json=body, headers=headers)


async def test_a_session_started_with_one_token_cannot_be_used_with_another(database_url: str) -> None:
    seeded = await _seed(database_url)
    a, b = seeded["shop-a"], seeded["shop-b"]
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_webhooks", "arguments": {}}}
    with serving(database_url) as url:
        async with httpx2.AsyncClient(timeout=30) as http:
            started = await _rpc(http, url, a["token"], None, init)
            session = started.headers["mcp-session-id"]
            await _rpc(http, url, a["token"], session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            mine = await _rpc(http, url, a["token"], session, call)
            assert f'"id\\":{a["hook"]}' in mine.text.replace(" ", "") or str(a["hook"]) in mine.text
            other = await _rpc(http, url, b["token"], session, call)
            assert other.status_code == 403 and "started with another token" in other.text
            admin = await _rpc(http, url, ADMIN, session, call)
            assert admin.status_code == 403 and "shop-a.example" not in admin.text


async def test_a_tenant_token_is_scoped_over_sse_too(database_url: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    seeded = await _seed(database_url)
    a, b = seeded["shop-a"], seeded["shop-b"]
    with serving(database_url, "sse") as url, anyio.fail_after(30):
        async with (
            sse_client(url, headers={"authorization": f"Bearer {a['token']}"}) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.call_tool("list_webhooks", {})
            assert [w["id"] for w in listed.structured_content["webhooks"]] == [a["hook"]]  # type: ignore[index]
            theirs = await session.call_tool("get_webhook", {"id": b["hook"]})
            assert theirs.is_error and f"no webhook with id {b['hook']}" in _text(theirs)
