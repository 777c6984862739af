"""Worker liveness in one process: registering, a dead worker's leases ended by another, and a
worker that loses its lock (its PostgreSQL connection) fencing itself off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from aiohttp import web
from sqlalchemy import select

from conftest import Received, Receiver, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.delivery.dispatcher import Dispatcher
from webhook_mcp.storage.liveness import LIVENESS_LOCK_SPACE
from webhook_mcp.storage.schema import deliveries, workers
from webhook_mcp.storage.store import Store

pytestmark = pytest.mark.anyio

EVENT = "order.created"


async def leased_to(hub: Hub, owner: str) -> int:
    d = deliveries.c
    return len(await hub.store.fetch_all(select(d.id).where(d.lease_owner == owner, d.state == "pending")))


async def test_a_dead_workers_leases_end_at_once_a_live_ones_stay(database_url: str) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        await hub.service.create_webhook("http://127.0.0.1:9/hook", [EVENT])
        await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * 6)
        # Two workers, each with a store of its own, as two processes would have.
        alive, dying = Store(hub.store.engine), Store(hub.store.engine)
        await alive.register_worker("alive")
        await dying.register_worker("dying")
        now = time.time()
        assert len(await alive.claim("alive", 3, now, 600, 64)) == 3
        assert len(await dying.claim("dying", 3, now, 600, 64)) == 3
        assert await hub.store.reap_dead_workers(time.time()) == 0  # both alive

        await dying.unregister_worker("dying")  # its lock goes, as when its process dies
        assert await hub.store.reap_dead_workers(time.time()) == 3
        assert await leased_to(hub, "dying") == 0 and await leased_to(hub, "alive") == 3
        # Due again at once, and claimable within the endpoint's limit.
        assert len(await hub.store.claim("third", 10, time.time(), 600, 64)) == 3
        assert await hub.store.reap_dead_workers(time.time()) == 0
        await alive.unregister_worker("alive")


async def test_unregistered_owners_keep_their_leases(hub: Hub) -> None:
    """Leases of a worker that never took a lock (an older version) end only when they run out."""
    await hub.service.create_webhook("http://127.0.0.1:9/hook", [EVENT])
    await hub.service.publish(EVENT, hub.catalog.get(EVENT).example)
    assert len(await hub.store.claim("old-worker", 1, time.time(), 600, 64)) == 1
    assert await hub.store.reap_dead_workers(time.time()) == 0
    assert await leased_to(hub, "old-worker") == 1


async def _hanging(gate: asyncio.Event, seen: list[str]) -> Any:
    async def respond(received: Received, _n: int) -> web.Response:
        seen.append(received.headers.get("webhook-id", ""))
        await gate.wait()
        return web.Response(text="ok")

    return respond


async def test_a_worker_that_loses_its_lock_drops_its_queue_and_registers_anew(
    receiver_factory: Any, postgres_url: str
) -> None:
    gate, seen = asyncio.Event(), []
    receiver: Receiver = await receiver_factory(responder=await _hanging(gate, seen))
    settings = make_settings(postgres_url, per_endpoint_concurrency=2, max_concurrency=4)
    async with Hub.open(settings, dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        published = await hub.service.publish_many([(EVENT, hub.catalog.get(EVENT).example, None)] * 10)
        dispatcher = Dispatcher(hub.store, hub.sender, settings)
        task = asyncio.create_task(dispatcher.run())
        try:
            await wait_until(lambda: len(seen) == 2 and dispatcher._queued_total > 0, timeout=10)
            first_id = dispatcher.worker_id
            # Its lock's connection dies (a network cut, a PostgreSQL restart).
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                    (LIVENESS_LOCK_SPACE,),
                )
            await wait_until(lambda: dispatcher.worker_id != first_id, timeout=10)
            assert dispatcher._queued_total == 0, "what it queued may be taken by others: not sent"
            # Registered anew; the old registration goes when its leases are ended.
            await wait_until(lambda: _registered(hub, [dispatcher.worker_id]), timeout=10)
            # Its old leases ended (the old id is a dead worker), so it claims them again itself.
            await wait_until(lambda: _none(leased_to(hub, first_id)), timeout=10)
            gate.set()
            await wait_until(lambda: len(set(seen)) == 10, timeout=15)
            duplicates = [i for i, n in Counter(seen).items() if n > 1]
            assert len(duplicates) <= 2, "only the sends under way when the lock went may repeat"
            assert set(seen) == {p.event_id for p in published}
        finally:
            gate.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _none(count: Any) -> bool:
    return await count == 0


async def _registered(hub: Hub, expected: list[str]) -> bool:
    return [row.id for row in await hub.store.fetch_all(select(workers.c.id))] == expected
