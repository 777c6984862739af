"""The inbox route on the HTTP application: served beside the MCP endpoint on the same port,
reachable without the bearer token (its id is the credential), and reached by this server's own
sender although nothing private is allowed."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn

from conftest import make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_inbox_is_a_route_of_the_http_app(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, allowed_private_networks=[], api_token="t0ken-for-tests")
    port = free_port()
    async with Hub.open(settings, dispatch=False) as hub:
        app = create_http_app(hub, "streamable-http", "127.0.0.1", port)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started)
            inbox = await hub.inboxes.open(status=202)
            assert inbox.url.startswith(f"http://127.0.0.1:{port}/inbox/")
            async with httpx.AsyncClient() as client:
                answered = await client.post(inbox.url, content=b'{"hello": 1}')
                unknown = await client.post(f"http://127.0.0.1:{port}/inbox/not-an-inbox", content=b"{}")
                guarded = await client.post(f"http://127.0.0.1:{port}/mcp", json={})
            assert (answered.status_code, unknown.status_code, guarded.status_code) == (202, 404, 401)
            outcome = await hub.sender.send(inbox.url, {"content-type": "application/json"}, b"{}")
            assert outcome.status_code == 202, outcome.error
            assert [request.body for request in inbox.requests] == [b'{"hello": 1}', b"{}"]
        finally:
            server.should_exit = True
            await serving
