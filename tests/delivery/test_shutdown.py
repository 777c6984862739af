"""Stopping cleanly: claiming stops, what was claimed but not started goes back at once (not
charged, due now, no lease), sends in flight get the grace period, results are written. In
process on both databases, and with two real `webhook-mcp worker` processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import func, select

from conftest import Received, Receiver, make_settings, process_env, wait_until
from webhook_mcp import Hub
from webhook_mcp.storage.schema import deliveries

pytestmark = pytest.mark.anyio

EVENT = "order.created"
CLI = shutil.which("webhook-mcp", path=str(Path(sys.executable).parent)) or shutil.which("webhook-mcp")
ReceiverFactory = Callable[..., Awaitable[Receiver]]


async def gated(receiver_factory: ReceiverFactory, gate: asyncio.Event) -> Receiver:
    async def respond(_received: Received, _n: int) -> web.Response:
        await gate.wait()
        return web.Response(status=200, text="ok")

    return await receiver_factory(responder=respond)


async def leased_count(hub: Hub) -> int:
    query = select(func.count()).select_from(deliveries).where(deliveries.c.lease_owner.is_not(None))
    return int(await hub.store.scalar(query))


def slow_settings(database_url: str, grace: float) -> object:
    # Two sends at once to the endpoint and as many queued ahead behind them (lease >= 3 timeouts).
    return make_settings(
        database_url, per_endpoint_concurrency=2, max_concurrency=8, lease_seconds=30.0, shutdown_grace=grace
    )


async def test_stop_hands_back_at_once_and_cuts_sends_at_the_grace_period(
    database_url: str, receiver_factory: ReceiverFactory
) -> None:
    gate = asyncio.Event()
    receiver = await gated(receiver_factory, gate)
    grace = 0.5
    async with Hub.open(slow_settings(database_url, grace)) as hub:  # type: ignore[arg-type]
        await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * 10)
        await receiver.wait_for(2)
        await wait_until(lambda: _equals(leased_count(hub), 4))  # two sending, two queued behind them
        started = time.monotonic()
        await hub.stop_dispatcher()
        elapsed = time.monotonic() - started
        gate.set()
        rows = await hub.store.fetch_all(select(deliveries))
    assert grace <= elapsed < grace + 1
    assert Counter(row.state for row in rows) == {"pending": 10}
    assert all(row.lease_owner is None and row.attempts == 0 for row in rows), "nothing charged, no lease left"
    assert all(row.next_attempt_at <= time.time() for row in rows), "due at once"


async def test_sends_in_flight_finish_and_are_written(database_url: str, receiver_factory: ReceiverFactory) -> None:
    gate = asyncio.Event()
    receiver = await gated(receiver_factory, gate)
    async with Hub.open(slow_settings(database_url, 10.0)) as hub:  # type: ignore[arg-type]
        await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * 10)
        await receiver.wait_for(2)
        await wait_until(lambda: _equals(leased_count(hub), 4))
        stopping = asyncio.create_task(hub.stop_dispatcher())
        # The two queued behind the sends go back before the sends end.
        await wait_until(lambda: _equals(leased_count(hub), 2))
        gate.set()
        await stopping
        rows = await hub.store.fetch_all(select(deliveries))
    assert Counter((row.state, row.attempts) for row in rows) == {("succeeded", 1): 2, ("pending", 0): 8}
    assert all(row.lease_owner is None for row in rows)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# --- two real workers on PostgreSQL ----------------------------------------------------------------


class IdLog:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, received: Received, _n: int) -> web.Response:
        # One event goes to every webhook with the same webhook-id: tell them apart by path.
        self.ids.append(received.path + " " + {k.lower(): v for k, v in received.headers.items()}["webhook-id"])
        await asyncio.sleep(0.005)  # a receiver that takes a moment, so sends are in flight at any time
        return web.Response(status=200, text="ok")


def _env(database_url: str) -> dict[str, str]:
    return process_env(database_url, WEBHOOK_MCP_DATABASE_POOL_SIZE="4", WEBHOOK_MCP_SHUTDOWN_GRACE="10")


async def _start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    assert CLI is not None, "the webhook-mcp console script is not installed"
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            CLI, "worker", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
        )


async def _leases_of(hub: Hub, pid: int) -> set[int]:
    """Deliveries the worker with this process id holds a lease on."""
    query = select(deliveries.c.id).where(deliveries.c.state == "pending", deliveries.c.lease_owner.like(f"%:{pid}:%"))
    return {row.id for row in await hub.store.fetch_all(query)}


async def test_sigterm_under_load_loses_nothing_and_the_other_worker_takes_over(
    postgres_url: str, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    log = IdLog()
    receiver = await receiver_factory(responder=log)
    total, webhooks = 10_000, 8  # several endpoints, so both workers have work (one holds a hot endpoint's slots)
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        for n in range(webhooks):
            await hub.service.create_webhook(f"{receiver.url}/{n}", [EVENT])
        for _ in range(total // webhooks // 250):
            await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * 250)
        logs = [tmp_path / "stopped.log", tmp_path / "other.log"]
        procs = [await _start(_env(postgres_url), path) for path in logs]
        try:
            await wait_until(lambda: len(set(log.ids)) >= 2000 or any(p.returncode is not None for p in procs), 60)
            assert all(p.returncode is None for p in procs), [path.read_text() for path in logs]
            # Stop the one holding more deliveries right now.
            leases = [len(await _leases_of(hub, proc.pid)) for proc in procs]
            stopped, other = procs if leases[0] >= leases[1] else procs[::-1]
            # What the stopping worker holds at the signal: in flight, queued, or finished but unwritten
            # (frozen while we look; if it had just written everything, let it run on and look again).
            held: set[int] = set()
            for _ in range(50):
                stopped.send_signal(signal.SIGSTOP)
                held = await _leases_of(hub, stopped.pid)
                stopped.send_signal(signal.SIGCONT)
                if held:
                    break
                await asyncio.sleep(0.02)
            started = time.monotonic()
            stopped.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(stopped.wait(), 12) == 0, [path.read_text() for path in logs]
            exit_seconds = time.monotonic() - started
            assert await _leases_of(hub, stopped.pid) == set(), "a stopped worker must hold no lease"
            assert held, "the signal should land while the worker holds deliveries"
            done = select(func.count()).select_from(deliveries)
            finished = done.where(deliveries.c.state == "succeeded", deliveries.c.id.in_(held))
            await wait_until(lambda: _equals(hub.store.scalar(finished), len(held)), timeout=5)
            takeover_seconds = time.monotonic() - started - exit_seconds
            succeeded = done.where(deliveries.c.state == "succeeded")
            await wait_until(lambda: _equals(hub.store.scalar(succeeded), total), 60)
            assert other.returncode is None
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    assert exit_seconds < 10 + 2, "exit within the grace period plus 2 s"
    assert takeover_seconds < 1.0, f"what was handed back took {takeover_seconds:.2f} s to be delivered"
    assert len(set(log.ids)) == total, "nothing lost"
    assert len(log.ids) == total, "a clean stop sends nothing twice"
    assert not any("Traceback" in path.read_text() for path in logs)
