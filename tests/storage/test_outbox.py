"""The outbox's hot path on the driver's cursor: a group of events without idempotency keys and
their deliveries, on SQLite and PostgreSQL, exactly as the SQLAlchemy path writes them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import select

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.core.ids import new_event_id
from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID
from webhook_mcp.storage.base import WORK_CHANNEL
from webhook_mcp.storage.records import NewEvent
from webhook_mcp.storage.schema import deliveries, events
from webhook_mcp.storage.store import Store

pytestmark = pytest.mark.anyio


def _hook(url: str, types: list[str], now: float, *, enabled: bool = True) -> dict[str, object]:
    hook = {"url": url, "events": types, "secret": "whsec_x", "created_at": now, "updated_at": now}
    return hook | {"enabled": enabled}


def _event(event_type: str, tenant_id: int = DEFAULT_TENANT_ID, problems: str | None = None) -> NewEvent:
    event_id = new_event_id()
    body = json.dumps({"id": event_id, "type": event_type, "data": {"id": "ord_1", "note": "é"}})
    return NewEvent(event_id, event_type, body, None, problems, tenant_id)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        yield hub.store


async def test_a_group_stores_its_events_and_one_delivery_per_subscribed_enabled_webhook(store: Store) -> None:
    now = time.time()
    acme = await store.create_tenant("acme", now)
    both = await store.insert_webhook(_hook("https://a.example/hook", ["order.created", "order.paid"], now))
    paid = await store.insert_webhook(_hook("https://b.example/hook", ["order.paid"], now))
    await store.insert_webhook(_hook("https://c.example/hook", ["order.created"], now, enabled=False))
    theirs = await store.scoped(acme.id).insert_webhook(_hook("https://d.example/hook", ["order.created"], now))
    group = [
        _event("order.created"),
        _event("order.paid", problems='["data.total: must be an integer"]'),
        _event("order.refunded"),
        _event("order.created", acme.id),
    ]
    stored = await store.publish(group, now, now - 3600)

    assert [(s.id, s.type, s.queued, s.duplicate) for s in stored] == [
        (group[0].id, "order.created", 1, False),
        (group[1].id, "order.paid", 2, False),
        (group[2].id, "order.refunded", 0, False),
        (group[3].id, "order.created", 1, False),
    ]
    rows = await store.fetch_all(select(events).order_by(events.c.id))
    assert [(r.id, r.tenant_id, r.type, r.body, r.created_at, r.problems, r.idempotency_key) for r in rows] == [
        (n.id, n.tenant_id, n.type, n.body, now, n.problems, None) for n in sorted(group, key=lambda n: n.id)
    ]
    queued = await store.fetch_all(select(deliveries))
    assert {(d.webhook_id, d.event_id) for d in queued} == {
        (both.id, group[0].id),
        (both.id, group[1].id),
        (paid.id, group[1].id),
        (theirs.id, group[3].id),
    }
    in_order = [(d.event_id, d.webhook_id) for d in sorted(queued, key=lambda d: d.id)]
    assert in_order == [
        (group[0].id, both.id),
        (group[1].id, both.id),
        (group[1].id, paid.id),
        (group[3].id, theirs.id),
    ]  # ids in the events' order: claims take the oldest first
    assert all(
        (d.state, d.attempts, d.next_attempt_at, d.created_at, d.updated_at, d.lease_owner)
        == ("pending", 0, now, now, now, None)
        for d in queued
    )


async def test_a_group_is_all_or_nothing(store: Store) -> None:
    now = time.time()
    await store.insert_webhook(_hook("https://a.example/hook", ["order.created"], now))
    first = _event("order.created")
    await store.publish([first], now, now - 3600)
    fresh = _event("order.created")
    with pytest.raises(Exception, match=r"(?i)unique|primary key"):
        await store.publish([fresh, first], now, now - 3600)  # the second id is taken
    assert [r.id for r in await store.fetch_all(select(events.c.id))] == [first.id]
    assert [r.event_id for r in await store.fetch_all(select(deliveries.c.event_id))] == [first.id]
    again = await store.publish([fresh], now, now - 3600)  # the store is fine afterwards
    assert again[0].queued == 1


async def test_a_group_with_a_key_takes_the_keyed_path_and_counts_alike(store: Store) -> None:
    now = time.time()
    await store.insert_webhook(_hook("https://a.example/hook", ["order.created"], now))
    keyed = NewEvent(new_event_id(), "order.created", "{}", "key-1")
    stored = await store.publish([_event("order.created"), keyed, _event("order.paid")], now, now - 3600)
    assert [s.queued for s in stored] == [1, 1, 0]
    repeat = await store.publish([NewEvent(new_event_id(), "order.created", "{}", "key-1")], now, now - 3600)
    assert repeat[0].duplicate and repeat[0].id == keyed.id


async def test_postgres_wakes_listening_workers_only_when_something_was_queued(postgres_url: str) -> None:
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        now = time.time()
        await hub.store.insert_webhook(_hook("https://a.example/hook", ["order.created"], now))
        with psycopg.connect(postgres_url, autocommit=True) as listener:
            listener.execute(f"LISTEN {WORK_CHANNEL}")
            await hub.store.publish([_event("order.paid")], now, now - 3600)
            assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
            await hub.store.publish([_event("order.created"), _event("order.created")], now, now - 3600)
            woken = list(listener.notifies(timeout=5, stop_after=1))
            assert [n.channel for n in woken] == [WORK_CHANNEL]
