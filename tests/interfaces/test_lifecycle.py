"""The real console script stopping on signals: `serve` over stdio and over HTTP and `worker`
exit 0 within the grace period plus 2 s with sends still hanging, leaving no lease and charging no
attempt; a second signal exits at once. Also the worker's health port and the log formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from conftest import Received, Receiver, make_settings, process_env, wait_until
from webhook_mcp import Hub
from webhook_mcp.core.logs import MigrationLines, log_handler
from webhook_mcp.storage.schema import deliveries

pytestmark = pytest.mark.anyio

EVENT = "order.created"
GRACE = 1.0
CLI = shutil.which("webhook-mcp", path=str(Path(sys.executable).parent)) or shutil.which("webhook-mcp")
ReceiverFactory = Callable[..., Awaitable[Receiver]]


def read(path: Path) -> str:
    return path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    settings = {"WEBHOOK_MCP_DELIVERY_TIMEOUT": "20", "WEBHOOK_MCP_SHUTDOWN_GRACE": str(GRACE)}
    return process_env(database_url, **(settings | extra))


async def hanging(receiver_factory: ReceiverFactory) -> Receiver:
    never = asyncio.Event()

    async def respond(_received: Received, _n: int) -> web.Response:
        await never.wait()
        return web.Response(status=200)

    return await receiver_factory(responder=respond)


@asynccontextmanager
async def backlog(database_url: str, receiver: Receiver, count: int = 20) -> AsyncIterator[Hub]:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * count)
        yield hub


@asynccontextmanager
async def process(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    assert CLI is not None, "the webhook-mcp console script is not installed"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            CLI, *args, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=sink
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def assert_handed_back(hub: Hub, count: int) -> None:
    rows = await hub.store.fetch_all(select(deliveries))
    assert len(rows) == count
    assert all(row.state == "pending" and row.lease_owner is None and row.attempts == 0 for row in rows), [
        (row.state, row.lease_owner, row.attempts) for row in rows
    ]


async def stop_in_time(proc: asyncio.subprocess.Process, log: Path) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), GRACE + 10)
    elapsed = time.monotonic() - started
    assert code == 0, read(log)
    assert elapsed < GRACE + 2, f"took {elapsed:.2f} s to stop"
    assert "Traceback" not in read(log)
    return elapsed


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_serve_stops_in_time_and_hands_back(
    transport: str, sqlite_url: str, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    receiver = await hanging(receiver_factory)
    async with backlog(sqlite_url, receiver) as hub:
        port = free_port()
        args = ["serve", "--transport", transport, "--port", str(port)] if transport != "stdio" else ["serve"]
        log = tmp_path / "serve.log"
        async with process(args, env_for(sqlite_url), log) as proc:
            await receiver.wait_for(1, timeout=30)
            if transport != "stdio":
                async with httpx.AsyncClient() as client:
                    ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                assert ready.status_code == 200, ready.text
            await stop_in_time(proc, log)
        await assert_handed_back(hub, 20)
    assert "SIGTERM received" in read(log)


async def test_worker_with_health_port_stops_in_time(
    database_url: str, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    receiver = await hanging(receiver_factory)
    async with backlog(database_url, receiver) as hub:
        port = free_port()
        log = tmp_path / "worker.log"
        env = env_for(database_url, WEBHOOK_MCP_LOG_FORMAT="json", WEBHOOK_MCP_WORKER_HTTP_PORT=str(port))
        async with process(["worker"], env, log) as proc:
            await receiver.wait_for(1, timeout=30)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                await wait_until(lambda: "health and metrics at" in read(log), timeout=30)
                assert (await client.get("/healthz")).json()["status"] == "ok"
                ready = (await client.get("/readyz")).json()
                assert ready["status"] == "ready" and ready["checks"]["dispatcher"]["in_flight"] >= 1
                metrics = (await client.get("/metrics")).text
                assert "webhook_mcp_deliveries_in_flight" in metrics
            await stop_in_time(proc, log)
        await assert_handed_back(hub, 20)
    records = [json.loads(line) for line in read(log).splitlines()]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"].startswith("worker running on") for r in records)


async def test_second_signal_exits_at_once(sqlite_url: str, receiver_factory: ReceiverFactory, tmp_path: Path) -> None:
    receiver = await hanging(receiver_factory)
    async with backlog(sqlite_url, receiver, count=3):
        log = tmp_path / "worker.log"
        async with process(["worker"], env_for(sqlite_url, WEBHOOK_MCP_SHUTDOWN_GRACE="60"), log) as proc:
            await receiver.wait_for(1, timeout=30)
            proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: "SIGTERM received" in read(log), timeout=10)
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 128 + signal.SIGINT
    assert time.monotonic() - started < 2
    assert "second SIGINT: exiting now" in read(log)


async def test_worker_refuses_a_bad_port(sqlite_url: str, tmp_path: Path) -> None:
    async with process(["worker", "--http-port", "70000"], env_for(sqlite_url), tmp_path / "w.log") as proc:
        assert await asyncio.wait_for(proc.wait(), 30) == 2
    message = (tmp_path / "w.log").read_text()
    assert message.strip() == "webhook-mcp: --http-port 70000 is not a TCP port; give 1-65535"


def test_json_records_carry_the_ids_passed_with_extra(sqlite_url: str) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("webhook_mcp.test_json")
    handler = log_handler(make_settings(sqlite_url, log_format="json"), stream)
    logger.addHandler(handler)
    try:
        logger.warning("webhook %s disabled", 7, extra={"webhook_id": 7, "delivery_id": 12, "event_id": "evt_1"})
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "webhook 7 disabled" and record["level"] == "WARNING"
    assert (record["webhook_id"], record["delivery_id"], record["event_id"]) == (7, 12, "evt_1")


def test_migration_docstrings_become_one_line() -> None:
    doc = "Scale-out: hourly rollups for fast stats,\nand indexes for\nfiltered pages."
    record = logging.LogRecord(
        "alembic.runtime.migration", logging.INFO, "", 0, "Running upgrade %s -> %s, %s", ("0001", "0002", doc), None
    )
    assert MigrationLines().filter(record)
    assert record.getMessage() == "migrating the database schema 0001 -> 0002 (Scale-out)"
    chatter = logging.LogRecord("alembic.runtime.migration", logging.INFO, "", 0, "Context impl SQLiteImpl.", (), None)
    assert not MigrationLines().filter(chatter)


async def test_stdio_dispatcher_starts_after_the_first_answer(
    sqlite_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from webhook_mcp.interfaces import lifecycle
    from webhook_mcp.interfaces.mcp.server import create_server

    monkeypatch.setattr(lifecycle, "AT_THE_LATEST", 3600.0)
    async with Hub.open(make_settings(sqlite_url), dispatch=True, defer_dispatcher=True) as hub:
        server = create_server(hub=hub)
        lifecycle._after_first_answer(hub, server)
        assert hub.dispatcher is None and hub.dispatches
        async with Client(server) as client:
            await client.call_tool("create_webhook", {"url": receiver.url, "events": [EVENT]})
            await wait_until(lambda: hub.dispatcher_task is not None, timeout=10)
            await client.call_tool("send_event", {"event": EVENT, "data": hub.catalog.get(EVENT).example})
            await receiver.wait_for(1, timeout=30)
        await hub.stop_dispatcher()
        hub.start_dispatcher()  # a start still scheduled when the hub stops does nothing
        assert hub.dispatcher_task is not None and hub.dispatcher_task.done()
