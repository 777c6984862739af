"""Every store query that takes an id, run on one tenant's view with another tenant's ids: each
answers as for an id that does not exist and changes nothing. The full store (the dispatcher's and
the operator's) sees every tenant, and its SQL carries no tenant condition at all."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.storage.dashboard import AttemptFilter
from webhook_mcp.storage.records import AttemptRecord, NewEvent
from webhook_mcp.storage.schema import attempt_rollups, deliveries, delivery_attempts, webhooks
from webhook_mcp.storage.store import Store

pytestmark = pytest.mark.anyio
EVENT = "order.created"

# Store queries no tenant's view is for: the dispatcher's queue and upkeep, retention, workers,
# the operator's tenant catalogue, ad-hoc reads, and lifecycle.
NOT_PER_TENANT = {
    "claim",
    "listen_for_work",
    "prune_attempts",
    "prune_deliveries",
    "prune_events",
    "reclaim_pruned",
    "reap_dead_workers",
    "register_worker",
    "unregister_worker",
    "still_registered",
    "schema_revision",
    "create_tenant",
    "find_tenant",
    "list_tenants",
    "tenant_overview",
    "rename_tenant",
    # The operator's tenant tokens and tenant deletion: they name their tenant explicitly.
    "insert_token",
    "list_tokens",
    "delete_token",
    "token_tenant",
    "touch_token",
    "mark_tenant_deleted",
    "deleted_tenants",
    "purge_tenant_step",
    "fetch_all",
    "scalar",
    "close",
}


@dataclass
class Shop:
    tenant_id: int
    webhook_id: int
    delivery_id: int
    attempt_id: int


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        yield hub.store


async def _shop(store: Store, name: str) -> Shop:
    """A tenant with a webhook, one dead delivery and its attempt (and the attempt's rollup)."""
    now = time.time()
    tenant = await store.create_tenant(name, now)
    view = store.scoped(tenant.id)
    hook = await view.insert_webhook(
        {"url": f"https://{name}.example/hook", "events": [EVENT], "secret": "whsec_x", "created_at": now,
         "updated_at": now, "previous_secret": "whsec_old", "previous_secret_expires_at": now - 1}
    )  # fmt: skip
    (stored,) = await view.publish([NewEvent(f"evt_{name}", EVENT, "{}")], now, now - 3600)
    delivery_id = await store.scalar(select(deliveries.c.id).where(deliveries.c.event_id == stored.id))
    attempt = AttemptRecord(
        delivery_id, hook.id, stored.id, EVENT, 1, False, now, 500, 5.0, False, "HTTP 500", "", "failed"
    )
    await store.record_attempts([attempt], now)
    attempt_id = await store.scalar(select(delivery_attempts.c.id).where(delivery_attempts.c.webhook_id == hook.id))
    return Shop(tenant.id, hook.id, delivery_id, attempt_id)


async def _rows(store: Store, shop: Shop) -> list[Any]:
    rows: list[Any] = []
    for table in (webhooks, deliveries, delivery_attempts, attempt_rollups):
        column = table.c.id if table is webhooks else table.c.webhook_id
        rows += [tuple(row) for row in await store.fetch_all(select(table).where(column == shop.webhook_id))]
    return rows


async def _refusals(view: Store, theirs: Shop, now: float) -> dict[str, Any]:
    """What each id-taking query of ``view`` answers for another tenant's ids."""
    record = AttemptRecord(None, theirs.webhook_id, "evt_t", EVENT, 1, True, now, 200, 1.0, True, None, "")
    return {
        "get_webhook": await view.get_webhook(theirs.webhook_id),
        "update_webhook": await view.update_webhook(theirs.webhook_id, {"description": "mine"}),
        "set_enabled": await view.set_enabled(theirs.webhook_id, False, "mine", now),
        "rotate_secret": await view.rotate_secret(theirs.webhook_id, "whsec_y", None, now),
        "delete_webhook": await view.delete_webhook(theirs.webhook_id),
        "get_delivery": await view.get_delivery(theirs.delivery_id),
        "requeue": await view.requeue(theirs.webhook_id, now),
        "requeue_one": await view.requeue(theirs.webhook_id, now, delivery_id=theirs.delivery_id),
        "release": await view.release([theirs.delivery_id], now),
        "attempts_page": await view.attempts_page(theirs.webhook_id, 10, None, None, None),
        "stats": await view.stats(theirs.webhook_id, None),
        "hourly_rollups": await view.hourly_rollups(theirs.webhook_id, now - 7200),
        "attempt_log": await view.attempt_log(AttemptFilter(webhook_id=theirs.webhook_id), 10),
        "attempt_context": await view.attempt_context(theirs.attempt_id),
        "record_attempts": (await view.record_attempts([record], now)).disabled,
        "replace_secrets": await view.replace_secrets(
            [
                {
                    "id": theirs.webhook_id,
                    "old_secret": "whsec_x",
                    "old_previous": "whsec_old",
                    "secret": "s",
                    "previous": None,
                }
            ]
        ),
        "forget_expired_secrets": await view.forget_expired_secrets(now),
    }


EXPECTED = {
    "get_webhook": None,
    "update_webhook": None,
    "set_enabled": None,
    "rotate_secret": None,
    "delete_webhook": None,
    "get_delivery": None,
    "requeue": 0,
    "requeue_one": 0,
    "release": None,
    "attempts_page": [],
    "stats": None,
    "hourly_rollups": [],
    "attempt_log": [],
    "attempt_context": None,
    "record_attempts": [],
    "replace_secrets": 0,
    "forget_expired_secrets": 0,
}
# Queries checked by what they see or write rather than by a refusal (below).
CHECKED_OTHERWISE = {"insert_webhook", "list_webhooks", "publish", "health_overview", "queue_snapshot"}


def test_every_store_query_is_checked_here_or_named_not_per_tenant() -> None:
    queries = {name for name, _ in inspect.getmembers(Store, inspect.iscoroutinefunction) if not name.startswith("_")}
    covered = set(EXPECTED) - {"requeue_one"} | CHECKED_OTHERWISE | NOT_PER_TENANT
    assert queries == covered, "a new store query: scope it, and add it to this test"


async def test_a_tenants_view_refuses_every_id_of_another_tenant(store: Store) -> None:
    acme, globex = await _shop(store, "acme"), await _shop(store, "globex")
    before = await _rows(store, globex)
    assert await store.scoped(acme.tenant_id).forget_expired_secrets(time.time()) == 1  # its own only
    assert await _refusals(store.scoped(acme.tenant_id), globex, time.time()) == EXPECTED
    assert await _rows(store, globex) == before
    # A guessed id answers the same way.
    guessed = Shop(acme.tenant_id, 98_765, 98_765, 98_765)
    assert await _refusals(store.scoped(acme.tenant_id), guessed, time.time()) == EXPECTED


async def test_a_tenants_view_sees_its_own_rows(store: Store) -> None:
    acme, globex = await _shop(store, "acme"), await _shop(store, "globex")
    view = store.scoped(acme.tenant_id)
    assert (await view.get_delivery(acme.delivery_id)).id == acme.delivery_id  # type: ignore[union-attr]
    assert [row.id for row in await view.attempts_page(acme.webhook_id, 10, None, None, None)] == [acme.attempt_id]
    stats = await view.stats(acme.webhook_id, None)
    assert stats is not None and stats["total"] == 1 and stats["states"]["failed"] == 1
    assert (await view.attempt_context(acme.attempt_id))["event"] is not None  # type: ignore[index]
    assert [row.id for row in await view.attempt_log(AttemptFilter(), 10)] == [acme.attempt_id]
    assert set(await view.health_overview(time.time() - 3600)) == {acme.webhook_id}
    snapshot = await view.queue_snapshot(time.time())
    assert (snapshot.dead, snapshot.webhooks_enabled) == (1, 1)
    assert await view.requeue(acme.webhook_id, time.time()) == 1
    # The full store sees both tenants.
    assert set(await store.health_overview(time.time() - 3600)) == {acme.webhook_id, globex.webhook_id}
    assert (await store.queue_snapshot(time.time())).webhooks_enabled == 2


async def test_a_tenants_view_publishes_for_its_own_tenant_whatever_the_event_says(store: Store) -> None:
    acme, globex = await _shop(store, "acme"), await _shop(store, "globex")
    now = time.time()
    before = await store.scalar(select(func.count()).select_from(deliveries))
    (stored,) = await store.scoped(acme.tenant_id).publish(
        [NewEvent("evt_x", EVENT, "{}", tenant_id=globex.tenant_id)], now, now - 3600
    )
    assert stored.queued == 1
    new = await store.fetch_all(select(deliveries.c.webhook_id).where(deliveries.c.event_id == "evt_x"))
    assert [row.webhook_id for row in new] == [acme.webhook_id]
    assert await store.scalar(select(func.count()).select_from(deliveries)) == before + 1


async def test_the_full_stores_queries_carry_no_tenant_condition(store: Store) -> None:
    d = deliveries.c
    full = str(select(deliveries).where(d.id == 1, store._hooks_in_scope(d.webhook_id)))
    assert full.endswith("WHERE deliveries.id = :id_1")
    query = select(webhooks.c.url).where(webhooks.c.id == 1, store._in_scope(webhooks.c.tenant_id))
    assert str(query).endswith("WHERE webhooks.id = :id_1")
    scoped = str(select(deliveries).where(d.id == 1, store.scoped(3)._hooks_in_scope(d.webhook_id)))
    assert "webhooks.tenant_id" in scoped
