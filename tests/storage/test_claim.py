"""The claim's per-tenant cap: no tenant has more deliveries leased than the cap, whichever
workers claim and however many webhooks it has, and a tenant at its cap does not keep the claim
from reaching the others."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import make_settings
from conftest import queue_due as _fill
from webhook_mcp import Hub
from webhook_mcp.storage.schema import deliveries, webhooks

pytestmark = pytest.mark.anyio

EVENT = "order.created"
PER_ENDPOINT = 64


async def _tenant(hub: Hub, name: str, hooks: int) -> list[int]:
    """A tenant with ``hooks`` webhooks; their ids."""
    tenant = await hub.store.create_tenant(name, time.time())
    service = hub.service.for_tenant(tenant.id)
    return [(await service.create_webhook(f"http://127.0.0.1:9/{name}/{n}", [EVENT])).id for n in range(hooks)]


async def _leased_per_tenant(hub: Hub, now: float) -> Counter[int]:
    """Unexpired leases per tenant, counted row by row."""
    d, w = deliveries.c, webhooks.c
    query = (
        select(w.tenant_id, func.count())
        .select_from(deliveries.join(webhooks, w.id == d.webhook_id))
        .where(d.lease_owner.is_not(None), d.next_attempt_at > now)
        .group_by(w.tenant_id)
    )
    return Counter({tenant: int(n) for tenant, n in await hub.store.fetch_all(query)})


async def _claim(hub: Hub, owner: str, limit: int, cap: int | None, **options: Any) -> Counter[int]:
    """Claims; what it leased, per webhook."""
    claimed = await hub.store.claim(owner, limit, time.time(), 3600, PER_ENDPOINT, tenant_cap=cap, **options)
    return Counter(d.webhook_id for d in claimed)


async def test_the_cap_counts_every_webhook_and_every_worker(database_url: str) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        noisy = await _tenant(hub, "noisy", 2)
        (quiet,) = await _tenant(hub, "quiet", 1)
        now = time.time()
        for hook in noisy:
            await _fill(hub, hook, 30, now - 60)
        await _fill(hub, quiet, 5, now - 30)

        first = await _claim(hub, "w1", 100, 10)
        assert sum(first[hook] for hook in noisy) == 10 and first[quiet] == 5
        # Another worker finds the noisy tenant at its cap, held by the first one's leases.
        blocked: list[int] = []
        assert await _claim(hub, "w2", 100, 10, blocked=blocked) == Counter()
        assert set(blocked) & set(noisy)
        # This worker's own deliveries in hand count too (from what it says it holds).
        assert await _claim(hub, "w1", 100, 10, in_flight=dict(first)) == Counter()

        # Leases handed back make room for exactly as many.
        w1 = await hub.store.fetch_all(
            select(deliveries.c.id).where(deliveries.c.lease_owner == "w1", deliveries.c.webhook_id.in_(noisy))
        )
        await hub.store.release([row.id for row in w1[:4]], time.time(), owner="w1")
        again = await _claim(hub, "w2", 100, 10)
        assert sum(again.values()) == 4
        leased = await _leased_per_tenant(hub, time.time())
        assert sorted(leased.values()) == [5, 10]

        # Without a cap, the claim takes as before.
        assert sum((await _claim(hub, "w3", 100, None)).values()) == 50


async def test_concurrent_claims_never_pass_the_cap(database_url: str) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        noisy = await _tenant(hub, "noisy", 4)
        now = time.time()
        for hook in noisy:
            await _fill(hub, hook, 40, now - 60)
        leased = 0
        for round_ in range(5):
            await asyncio.gather(*(_claim(hub, f"w{round_}.{n}", 20, 25) for n in range(8)))
            leased = sum((await _leased_per_tenant(hub, time.time())).values())
            assert leased <= 25
        assert leased == 25


async def test_a_tenant_at_its_cap_does_not_hide_the_others(database_url: str) -> None:
    """The oldest due rows, a whole window of them, all belong to a tenant at its cap: the claim
    looks past it to the other tenant's newer work."""
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        noisy = await _tenant(hub, "noisy", 3)
        (quiet,) = await _tenant(hub, "quiet", 1)
        now = time.time()
        for hook in noisy:
            await _fill(hub, hook, 200, now - 600)
        assert sum((await _claim(hub, "other", 10, 10)).values()) == 10
        await _fill(hub, quiet, 3, now - 10)
        taken = await _claim(hub, "me", 10, 10)
        assert taken == Counter({quiet: 3})
        # And with the look past full endpoints turned off, it stops at the window.
        await _fill(hub, quiet, 3, now - 5)
        assert await _claim(hub, "me", 10, 10, look_past_full=False) == Counter()


async def test_queued_ahead_counts_against_the_cap(database_url: str) -> None:
    """Deliveries leased to queue behind a worker's sends are leases like the others."""
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        (hook,) = await _tenant(hub, "shop", 1)
        await _fill(hub, hook, 50, time.time() - 60)
        claimed = await hub.store.claim(
            "w1", 100, time.time(), 3600, 4, ahead=4, ahead_limit=100, in_flight={}, tenant_cap=6
        )
        assert len(claimed) == 6
        assert sum((await _leased_per_tenant(hub, time.time())).values()) == 6


async def test_a_tenant_with_little_room_left_does_not_hide_the_others(database_url: str) -> None:
    """The window is all one tenant's, with room for two more: the claim takes those two and
    still reaches the other tenant's newer work in the same claim."""
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        noisy = await _tenant(hub, "noisy", 3)
        (quiet,) = await _tenant(hub, "quiet", 1)
        now = time.time()
        for hook in noisy:
            await _fill(hub, hook, 200, now - 600)
        assert sum((await _claim(hub, "other", 8, 10)).values()) == 8
        await _fill(hub, quiet, 3, now - 10)
        taken = await _claim(hub, "me", 10, 10)
        assert taken[quiet] == 3 and sum(taken[hook] for hook in noisy) == 2


async def test_tenants_take_turns_within_a_claim(database_url: str) -> None:
    """With a cap, a claim smaller than the flood still serves the other tenant: tenants' rows
    are taken in turns (each one's oldest first), not all of the oldest tenant's first. (PostgreSQL:
    SQLite's claim takes the oldest first, and other tenants' rows once the flood is at its cap.)"""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's claim takes the oldest rows first")
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        noisy = await _tenant(hub, "noisy", 2)
        (quiet,) = await _tenant(hub, "quiet", 1)
        now = time.time()
        for hook in noisy:
            await _fill(hub, hook, 300, now - 600)
        await _fill(hub, quiet, 2, now - 10)
        taken = await _claim(hub, "me", 10, 15)
        assert taken[quiet] == 2 and sum(taken.values()) == 10
