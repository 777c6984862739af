"""``webhook-mcp serve --tenant NAME`` over stdio, as a Claude Desktop entry for one shop runs it:
the tools see and publish for that tenant only, and an unknown name stops the start clearly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from conftest import call_tool as call
from conftest import make_settings, text_of, wait_until
from webhook_mcp import Hub

pytestmark = pytest.mark.anyio
EVENT = "order.created"
ADMIN = "admin-token"


def console_script() -> str:
    beside_python = Path(sys.executable).parent / "webhook-mcp"
    return str(beside_python) if beside_python.exists() else shutil.which("webhook-mcp") or "webhook-mcp"


def serve_for(database: Path, *args: str, **extra_env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=console_script(),
        args=["serve", *args],
        env={
            "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{database}",
            "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
            "WEBHOOK_MCP_SECRET_KEY": os.environ["WEBHOOK_MCP_SECRET_KEY"],
            "PATH": os.environ.get("PATH", ""),
            **extra_env,
        },
        cwd=str(database.parent),
    )


async def _two_shops(database: Path) -> tuple[int, int]:
    """acme's webhook and the default tenant's, in the file the server will open."""
    async with Hub.open(make_settings(f"sqlite:///{database}"), dispatch=False) as hub:
        acme = await hub.store.create_tenant("acme", time.time())
        ours = await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/hook", [EVENT])
        theirs = await hub.service.create_webhook("https://default.example/hook", [EVENT])
    return ours.id, theirs.id


@pytest.mark.parametrize("how", ["flag", "setting"])
async def test_serve_for_one_tenant_sees_and_publishes_for_it_only(tmp_path: Path, how: str) -> None:
    database = tmp_path / "shops.db"
    ours, theirs = await _two_shops(database)
    parameters = (
        serve_for(database, "--tenant", "acme") if how == "flag" else serve_for(database, WEBHOOK_MCP_TENANT="acme")
    )
    with anyio.fail_after(60):
        async with Client(parameters) as client:
            listed = await call(client, "list_webhooks", {})
            assert [w["id"] for w in listed["webhooks"]] == [ours]
            errored = await client.call_tool("get_webhook", {"id": theirs})
            missing = await client.call_tool("get_webhook", {"id": 999})
            assert errored.is_error and missing.is_error
            assert text_of(errored).replace(str(theirs), "N") == text_of(missing).replace("999", "N")
            published = await call(client, "send_event", {"event": EVENT, "data": {"id": "ord_1"}})
            assert published["queued"] == 1  # acme's webhook, not the default tenant's
    async with Hub.open(make_settings(f"sqlite:///{database}"), dispatch=False) as hub:
        assert (await hub.service.get_stats(theirs)).pending_deliveries == 0


def test_an_unknown_tenant_stops_the_start_with_how_to_create_it(tmp_path: Path) -> None:
    parameters = serve_for(tmp_path / "none.db", "--tenant", "nobody")
    result = subprocess.run(
        [parameters.command, *parameters.args],
        env=parameters.env,
        cwd=parameters.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "webhook-mcp: no tenant named 'nobody' (WEBHOOK_MCP_TENANT or --tenant); "
        "`webhook-mcp tenants create nobody` creates it"
    )
    assert "Traceback" not in result.stderr


def test_a_bad_tenant_name_is_a_usage_error(tmp_path: Path) -> None:
    parameters = serve_for(tmp_path / "none.db", "--tenant", "Not A Name")
    result = subprocess.run(
        [parameters.command, *parameters.args], env=parameters.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "tenant name 'Not A Name' is not valid" in result.stderr


def _start(parameters: StdioServerParameters) -> subprocess.Popen[bytes]:
    command = [parameters.command, *parameters.args]
    return subprocess.Popen(command, env=parameters.env, cwd=parameters.cwd, stderr=subprocess.PIPE)


async def test_serve_over_streamable_http_for_one_tenant_sees_it_only(tmp_path: Path) -> None:
    """The admin token on a server started for one tenant acts for that tenant too: its tools see
    that tenant's webhooks, and its events (no X-Webhook-Tenant) are published for it."""
    database = tmp_path / "shops.db"
    ours, theirs = await _two_shops(database)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ("--transport", "streamable-http", "--port", str(port), "--tenant", "acme", "--no-dispatcher")
    process = _start(serve_for(database, *args, WEBHOOK_MCP_API_TOKEN=ADMIN))

    async def listening() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True

    headers = {"authorization": f"Bearer {ADMIN}"}
    try:
        await wait_until(listening, timeout=30)
        with anyio.fail_after(30):
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client,
            ):
                listed = await call(client, "list_webhooks", {})
                assert [w["id"] for w in listed["webhooks"]] == [ours]
                event = {"type": EVENT, "data": {"id": "ord_2"}}
                posted = await http.post(f"http://127.0.0.1:{port}/v1/events", json=event)
                assert posted.status_code == 202, posted.text
                assert posted.json()["queued"] == 1
                refused = await http.get(f"http://127.0.0.1:{port}/v1/tenants")
                assert refused.status_code == 403 and "started for one tenant" in refused.json()["error"]["message"]
    finally:
        process.terminate()
        process.wait(timeout=15)
    async with Hub.open(make_settings(f"sqlite:///{database}"), dispatch=False) as hub:
        assert (await hub.service.get_stats(ours)).pending_deliveries == 1
        assert (await hub.service.get_stats(theirs)).pending_deliveries == 0
