"""What the dispatcher logs about single deliveries carries their ids (JSON logs show them)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from conftest import Receiver, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.storage.schema import deliveries

pytestmark = pytest.mark.anyio


async def test_a_dead_delivery_is_logged_with_its_ids(
    sqlite_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]
    caplog.set_level(logging.WARNING, logger="webhook_mcp.delivery")
    async with Hub.open(make_settings(sqlite_url, retry_schedule=(0.0, 0.01))) as hub:
        hook = await hub.service.create_webhook(receiver.url, ["order.created"])
        published = await hub.publish("order.created", dict(hub.catalog.get("order.created").example))

        async def dead() -> bool:
            rows = await hub.store.fetch_all(select(deliveries.c.state))
            return [row.state for row in rows] == ["failed"]

        await wait_until(dead)
        (row,) = await hub.store.fetch_all(select(deliveries.c.id))
    (record,) = [r for r in caplog.records if "is dead" in r.getMessage()]
    assert (
        record.getMessage()
        == f"delivery {row.id} to webhook {hook.id} is dead after 2 attempts: HTTP 500 Internal Server Error"
    )
    assert (record.webhook_id, record.delivery_id, record.event_id) == (hook.id, row.id, published.event_id)  # type: ignore[attr-defined]
