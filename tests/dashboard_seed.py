"""A week of history for the dashboard's tests: events published at past times (a service on a
clock set back) and their attempts recorded through the store as the dispatcher records them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from webhook_mcp import Hub
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import deliveries


class Outcome:
    """What a seeded attempt looks like to the store (the sender's ``SendOutcome`` shape)."""

    def __init__(self, status: int | None, ms: float, error: str | None = None) -> None:
        self.success = status is not None and 200 <= status < 300
        self.status_code = status
        self.response_ms = ms
        self.error = error
        self.response_excerpt = "ok" if self.success else ("" if status is None else "upstream failed")
        self.retry_after = None


async def publish_at(hub: Hub, when: float, event_type: str, count: int) -> list[tuple[int, int, str]]:
    """Publish ``count`` events of ``event_type`` as if at ``when``; returns (delivery id,
    webhook id, event id) for every delivery queued."""
    past = WebhookService(hub.store, hub.catalog, hub.sender, hub.settings, clock=lambda: when)
    data = dict(hub.catalog.get(event_type).example)
    published = await past.publish_many([(event_type, data, None) for _ in range(count)])
    ids = [event.event_id for event in published]
    d = deliveries.c
    rows = await hub.store.fetch_all(select(d.id, d.webhook_id, d.event_id).where(d.event_id.in_(ids)))
    return [(row.id, row.webhook_id, row.event_id) for row in rows]


def attempts(
    queued: Sequence[tuple[int, int, str]], when: float, outcome: Outcome, event_type: str, final: bool
) -> list[AttemptRecord]:
    """One attempt for each queued delivery at ``when``; a failure is final (dead) or retried."""
    state = "succeeded" if outcome.success else ("failed" if final else "pending")
    return [
        AttemptRecord.of(
            outcome,
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            attempt_number=1,
            created_at=when,
            next_state=state,
            next_attempt_at=when + 3600 if state == "pending" else None,
        )
        for delivery_id, webhook_id, event_id in queued
    ]


async def seed_week(hub: Hub, now: float, *, seed: int = 7) -> dict[str, Any]:
    """Two webhooks over seven days: a shop endpoint that mostly succeeds (slower at night, a
    bad hour of 503s) and a payments endpoint whose receiver broke two days ago (its recent
    deliveries dead). Returns their ids."""
    rng = random.Random(seed)
    shop = await hub.service.create_webhook(
        "https://shop.example.com/webhooks/orders", ["order.created", "order.paid"], "Order sync for the warehouse"
    )
    payments = await hub.service.create_webhook("https://payments.example.net/hooks", ["payment.completed"], "Ledger")
    start = now // 3600 * 3600 - 7 * 24 * 3600 + 3600
    for hour in range(7 * 24):
        at = min(start + hour * 3600 + rng.uniform(0, 3000), now - 600)
        busy = 2 + (hour % 24 in range(8, 20)) * 4
        orders = await publish_at(hub, at, "order.created", rng.randint(busy - 1, busy + 1))
        batch: list[AttemptRecord] = []
        for index, queued in enumerate(orders):
            status = 503 if hour == 100 or rng.random() < 0.02 else 200
            latency = rng.lognormvariate(4.2 if hour % 24 in range(8, 20) else 3.6, 0.5)
            batch += attempts([queued], at + index, Outcome(status, latency), "order.created", final=False)
        paid = await publish_at(hub, at + 60, "payment.completed", rng.randint(1, 2))
        broken = hour >= 7 * 24 - 48
        outcome = Outcome(None, 10_000.0, "timed out after 10 s") if broken else Outcome(200, rng.uniform(80, 160))
        batch += attempts(paid, at + 61, outcome, "payment.completed", final=broken)
        await hub.store.record_attempts(batch, at + 61)
    crm = await hub.service.create_webhook("https://crm.example.org/in", ["customer.created"])
    gone_at = now - 2 * 3600
    customers = await publish_at(hub, gone_at, "customer.created", 1)
    reason = "disabled: the endpoint https://crm.example.org/in answered 410 Gone; update the URL or re-enable"
    gone = [
        AttemptRecord.of(
            Outcome(410, 35.0),
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type="customer.created",
            attempt_number=1,
            created_at=gone_at,
            next_state="failed",
            disable_reason=reason,
        )
        for delivery_id, webhook_id, event_id in customers
    ]
    await hub.store.record_attempts(gone, gone_at)
    return {"shop": shop.id, "payments": payments.id, "crm": crm.id}
