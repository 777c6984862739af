"""A webhook's next retry is one index probe: a backlog never tried, which comes first in due
order, is not walked to find it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Connection, insert, text

from webhook_mcp import Hub
from webhook_mcp.storage.logs import _NEXT_RETRY_BY_DIALECT
from webhook_mcp.storage.schema import deliveries, events

pytestmark = pytest.mark.anyio


async def test_next_retry_is_the_first_retry_due_behind_a_backlog_never_tried(hub: Hub) -> None:
    hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
    now = time.time()
    retry_at = now + 600

    def fill(conn: Connection) -> None:
        conn.execute(
            insert(events),
            [{"id": f"evt_{i}", "type": "order.created", "body": "{}", "created_at": now} for i in range(300)],
        )
        rows = [
            {
                "webhook_id": hook.id,
                "event_id": f"evt_{i}",
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now - 300 + i,
            }
            for i in range(290)
        ]
        rows += [  # tried before: due later, the earliest at retry_at
            {
                "webhook_id": hook.id,
                "event_id": f"evt_{i}",
                "state": "pending",
                "attempts": 2,
                "next_attempt_at": retry_at + i,
            }
            for i in range(290, 300)
        ]
        conn.execute(insert(deliveries), [{**row, "created_at": now, "updated_at": now} for row in rows])

    await hub.store._write(fill)
    stats = await hub.service.get_stats(hook.id)
    assert stats.next_retry_at is not None
    assert stats.next_retry_at.timestamp() == pytest.approx(retry_at + 290)


async def test_next_retry_probes_the_retrying_index(hub: Hub) -> None:
    statement = _NEXT_RETRY_BY_DIALECT[hub.store.engine.dialect.name]

    def plan(conn: Connection) -> str:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table would be scanned
            rows = conn.execute(text(f"EXPLAIN {statement.text}"), {"webhook_id": 1})
        else:
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {statement.text}"), {"webhook_id": 1})
        return " ".join(str(value) for row in rows for value in row)

    assert "ix_deliveries_retrying" in await hub.store._write(plan)
