"""Tenants in the store: existing data migrates into the default tenant, a view for one tenant
reaches none of another's rows by any id, and events reach their own tenant's webhooks only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text

from conftest import make_settings, migrate
from webhook_mcp import Hub
from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID
from webhook_mcp.storage import engine as database
from webhook_mcp.storage.records import NewEvent
from webhook_mcp.storage.schema import deliveries, events, webhooks
from webhook_mcp.storage.store import Store
from webhook_mcp.storage.tenants import TenantNameTaken

pytestmark = pytest.mark.anyio
EVENT = "order.created"


def _hook(url: str, now: float) -> dict[str, object]:
    return {"url": url, "events": [EVENT], "secret": "whsec_x", "created_at": now, "updated_at": now}


def _event(key: str | None, tenant_id: int) -> NewEvent:
    return NewEvent(f"evt_{time.time_ns()}_{tenant_id}_{key}", EVENT, "{}", key, None, tenant_id)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        yield hub.store


async def test_existing_rows_migrate_into_the_default_tenant(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, "0009")
    engine = database.create_sync(database_url)
    now = time.time()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO webhooks (url, events, secret, created_at, updated_at) "
                    "VALUES ('https://example.com/hook', :events, 'whsec_x', :now, :now)"
                ),
                {"events": f'["{EVENT}"]', "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO events (id, type, body, created_at, idempotency_key) "
                    "VALUES ('evt_1', :type, '{}', :now, 'ord_1')"
                ),
                {"type": EVENT, "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, created_at, updated_at) "
                    "VALUES (1, 'evt_1', 'pending', :now, :now, :now)"
                ),
                {"now": now},
            )
    finally:
        engine.dispose()
    await asyncio.to_thread(database.upgrade, database_url)
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        assert [(t.id, t.name) for t in await hub.store.list_tenants()] == [(DEFAULT_TENANT_ID, "default")]
        assert await hub.store.scalar(select(webhooks.c.tenant_id)) == DEFAULT_TENANT_ID
        assert await hub.store.scalar(select(events.c.tenant_id)) == DEFAULT_TENANT_ID
        assert await hub.store.scalar(select(func.count()).select_from(deliveries)) == 1  # the rebuild kept it
        # The key is still taken in the default tenant, and free in another one.
        other = await hub.store.create_tenant("acme", now)
        assert other.id == 2
        stored = await hub.store.publish([_event("ord_1", 1), _event("ord_1", other.id)], now, now - 3600)
        assert (stored[0].id, stored[0].duplicate, stored[1].duplicate) == ("evt_1", True, False)


async def test_a_view_of_one_tenant_reaches_no_other_tenants_webhook(store: Store) -> None:
    now = time.time()
    acme = await store.create_tenant("acme", now)
    globex = await store.create_tenant("globex", now)
    theirs = await store.scoped(globex.id).insert_webhook(_hook("https://globex.example/hook", now))
    view = store.scoped(acme.id)
    ours = await view.insert_webhook({**_hook("https://acme.example/hook", now), "tenant_id": globex.id})
    assert ours.tenant_id == acme.id  # a view registers for its own tenant, whatever it is told
    assert [row.id for row in await view.list_webhooks()] == [ours.id]
    assert await view.get_webhook(theirs.id) is None
    assert await view.update_webhook(theirs.id, {"description": "mine now"}) is None
    assert await view.set_enabled(theirs.id, False, "mine", now) is None
    assert await view.rotate_secret(theirs.id, "whsec_y", None, now) is None
    assert await view.delete_webhook(theirs.id) is None
    untouched = await store.get_webhook(theirs.id)
    assert untouched is not None and untouched.enabled and untouched.secret == "whsec_x"
    assert untouched.description == ""
    assert {row.id for row in await store.list_webhooks()} == {ours.id, theirs.id}  # the full store sees both


async def test_events_reach_only_their_own_tenants_webhooks(store: Store) -> None:
    now = time.time()
    acme = await store.create_tenant("acme", now)
    ours = await store.scoped(acme.id).insert_webhook(_hook("https://acme.example/hook", now))
    default = await store.insert_webhook(_hook("https://default.example/hook", now))
    stored = await store.publish([_event(None, acme.id), _event(None, DEFAULT_TENANT_ID)], now, now - 3600)
    assert [s.queued for s in stored] == [1, 1]
    queued = await store.fetch_all(select(deliveries.c.webhook_id, deliveries.c.event_id))
    assert {(row.webhook_id, row.event_id) for row in queued} == {(ours.id, stored[0].id), (default.id, stored[1].id)}


async def test_idempotency_keys_are_each_tenants_own(store: Store) -> None:
    now = time.time()
    acme = await store.create_tenant("acme", now)
    first = await store.publish([_event("k", acme.id), _event("k", DEFAULT_TENANT_ID)], now, now - 3600)
    assert [s.duplicate for s in first] == [False, False] and first[0].id != first[1].id
    again = await store.publish([_event("k", acme.id), _event("k", acme.id)], now, now - 3600)
    assert [(s.id, s.duplicate) for s in again] == [(first[0].id, True), (first[0].id, True)]


async def test_tenant_names_are_unique_and_renamable(store: Store) -> None:
    now = time.time()
    acme = await store.create_tenant("acme", now)
    with pytest.raises(TenantNameTaken):
        await store.create_tenant("acme", now)
    await store.create_tenant("globex", now)
    with pytest.raises(TenantNameTaken):
        await store.rename_tenant(acme.id, "globex")
    renamed = await store.rename_tenant(acme.id, "acme-shop")
    assert renamed is not None and renamed.name == "acme-shop"
    found = await store.find_tenant("acme-shop")
    assert found is not None and found.id == acme.id
    assert await store.find_tenant("acme") is None and await store.find_tenant(acme.id) is not None
    assert await store.rename_tenant(999, "nobody") is None
