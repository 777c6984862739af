"""Retention: finished deliveries and their events leave after their periods, in small batches;
pending and held deliveries, recent ones and the hourly statistics stay (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from conftest import Receiver, make_settings
from webhook_mcp import Hub
from webhook_mcp.delivery.retention import Retention
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import attempt_rollups, deliveries, events

pytestmark = pytest.mark.anyio

DAY = 86400.0
EVENT = "order.created"

# (state, created days ago, completed days ago or None, expected to stay)
LAYOUT = [
    ("succeeded", 100, 99, False),
    ("succeeded", 99, 99, False),
    ("succeeded", 98, 97, False),
    ("succeeded", 97, 97, False),
    ("failed", 96, 95, False),  # dead beyond its 90 days
    ("failed", 60, 59, True),  # dead, still replayable
    ("pending", 50, None, True),  # waiting for a retry, whatever its age
    ("held", 45, None, True),  # its webhook is disabled
    ("succeeded", 35, 31, False),
    ("succeeded", 5, 5, True),
]


def age(now: float, days: float) -> float:
    return now - days * DAY


async def _lay_out(hub: Hub, receiver: Receiver, now: float) -> list[tuple[int, str, bool]]:
    """Publish one event per row of LAYOUT and rewrite its delivery as the row says."""
    hook = await hub.service.create_webhook(receiver.url, [EVENT])
    laid: list[tuple[int, str, bool]] = []
    for state, created, completed, stays in LAYOUT:
        published = await hub.publish(EVENT, dict(hub.catalog.get(EVENT).example))
        created_at = age(now, created)
        values: dict[str, Any] = {"state": state, "created_at": created_at, "updated_at": created_at}
        values["completed_at"] = age(now, completed) if completed is not None else None
        values["next_attempt_at"] = created_at
        with hub.store.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.event_id == published.event_id).values(**values))
            conn.execute(update(events).where(events.c.id == published.event_id).values(created_at=created_at))
        laid.append((hook.id, published.event_id, stays))
    return laid


async def test_prune_keeps_only_what_retention_keeps(database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, delivery_retention_days=30, dead_delivery_retention_days=90)
    async with Hub.open(settings, dispatch=False) as hub:
        now = time.time()
        laid = await _lay_out(hub, receiver, now)
        hook_id = laid[0][0]
        # Events no webhook subscribed to: one old enough to go, one too young.
        with hub.store.engine.begin() as conn:
            conn.execute(
                events.insert(),
                [
                    {"id": "evt_lonely_old", "type": EVENT, "body": "{}", "created_at": age(now, 40)},
                    {"id": "evt_lonely_new", "type": EVENT, "body": "{}", "created_at": age(now, 0.5)},
                ],
            )
        test_attempt = AttemptRecord(None, hook_id, "evt_test", "webhook.test", 1, True, now, 200, 3.0, True, None, "")
        await hub.store.record_attempts([test_attempt], now)
        rollups = await hub.store.scalar(select(func.count()).select_from(attempt_rollups))

        pruned = await Retention(hub.store, settings, clock=lambda: now, batch=3).prune()

        left = {row.event_id: row.state for row in await hub.store.fetch_all(select(deliveries))}
        assert set(left) == {event_id for _hook, event_id, stays in laid if stays}
        assert pruned.deliveries == sum(1 for *_rest, stays in laid if not stays)
        kept_events = {row.id for row in await hub.store.fetch_all(select(events.c.id))}
        assert kept_events == set(left) | {"evt_lonely_new"}
        assert pruned.events == len(laid) - len(left) + 1
        assert await hub.store.scalar(select(func.count()).select_from(attempt_rollups)) == rollups
        # A second pass finds nothing more to do.
        again = await Retention(hub.store, settings, clock=lambda: now, batch=3).prune()
        assert (again.deliveries, again.events) == (0, 0)


async def test_zero_keeps_finished_deliveries(sqlite_url: str, receiver: Receiver) -> None:
    settings = make_settings(sqlite_url, delivery_retention_days=0)
    async with Hub.open(settings, dispatch=False) as hub:
        now = time.time()
        laid = await _lay_out(hub, receiver, now)
        pruned = await Retention(hub.store, settings, clock=lambda: now).prune()
        assert (pruned.deliveries, pruned.events) == (0, 0)
        assert await hub.store.scalar(select(func.count()).select_from(deliveries)) == len(laid)


def test_dead_deliveries_are_kept_at_least_as_long(sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match=r"dead_delivery_retention_days .* must be at least"):
        make_settings(sqlite_url, delivery_retention_days=30, dead_delivery_retention_days=7)
