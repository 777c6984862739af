"""A 202 means written: kill -9 a real server while clients publish, start it again, and every
event that got a 202 reaches the receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import Receiver, make_settings, wait_until
from webhook_mcp import Hub

pytestmark = pytest.mark.anyio

TOKEN = "durable-token"
CLIENTS = 16
KILL_AFTER_ACCEPTED = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(database_url: str, port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": database_url,
        "WEBHOOK_MCP_API_TOKEN": TOKEN,
        "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
        # A killed server's claimed deliveries come due again after the lease.
        "WEBHOOK_MCP_LEASE_SECONDS": "3",
        "WEBHOOK_MCP_DELIVERY_TIMEOUT": "2",
        "WEBHOOK_MCP_RETRY_SCHEDULE": "0,0.2,0.2,0.2",
        "WEBHOOK_MCP_POLL_INTERVAL": "0.1",
    }
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "serve", "--transport", "streamable-http"]
    return subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def listening(port: int, process: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_until(up, timeout=30, interval=0.05)


async def publish_until_killed(port: int, process: subprocess.Popen[bytes]) -> set[str]:
    """Clients publish single events and batches until the server is killed under them; the ids
    of every event that got a 202."""
    accepted: set[str] = set()
    deadline = time.monotonic() + 20

    async def client(number: int, http: httpx.AsyncClient) -> None:
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            single = {"type": "order.created", "data": {"id": f"c{number}-{sent}"}}
            body = single if sent % 4 else {"events": [single, {**single, "data": {"id": f"c{number}-{sent}b"}}]}
            try:
                response = await http.post("/v1/events", json=body)
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 202:
                answer = response.json()
                accepted.update(e["event_id"] for e in answer.get("events", [answer]))

    async def kill() -> None:
        # Mid-flight: once enough went in, while every client has a request under way.
        await wait_until(lambda: len(accepted) >= KILL_AFTER_ACCEPTED, timeout=20, interval=0.005)
        os.kill(process.pid, signal.SIGKILL)

    headers = {"authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits) as http:
        await asyncio.gather(kill(), *(client(n, http) for n in range(CLIENTS)))
    process.wait(timeout=10)
    return accepted


@pytest.mark.timeout(90)
async def test_every_accepted_event_is_delivered_after_a_kill_under_load(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, ["order.created"])
    port = free_port()
    server = start_server(database_url, port, tmp_path)
    try:
        await listening(port, server)
        accepted = await publish_until_killed(port, server)
        assert server.returncode == -signal.SIGKILL

        server = start_server(database_url, port, tmp_path)
        await listening(port, server)

        def delivered() -> set[str]:
            return {received.json["id"] for received in receiver.requests}

        await wait_until(lambda: accepted <= delivered(), timeout=40, interval=0.1)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
