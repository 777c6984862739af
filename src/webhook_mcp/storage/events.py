"""Publishing: the outbox (an event and its deliveries in one transaction) and idempotency keys."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.records import (
    NewEvent,
    StoredEvent,
)
from webhook_mcp.storage.schema import (
    deliveries,
    events,
    webhooks,
)


def new_event_id() -> str:
    """``evt_`` and a UUIDv7 in hex: milliseconds since the epoch first, then random bits, so ids
    sort by creation time and new rows land at the end of the indexes that hold them, instead of
    at random places in indexes that stop fitting the cache as the tables grow."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return "evt_" + uuid.UUID(int=value).hex


class EventQueries(StoreBase):
    async def publish(self, new_events: Sequence[NewEvent], now: float, idempotency_since: float) -> list[StoredEvent]:
        """The outbox: events and their deliveries are committed together, so nothing published
        can be lost, and an idempotency key seen within the window returns the first event."""

        def work(conn: Connection) -> Any:
            keys = [e.idempotency_key for e in new_events if e.idempotency_key]
            seen: dict[str, Any] = {}
            if keys:
                rows = conn.execute(
                    select(events.c.id, events.c.type, events.c.idempotency_key, events.c.created_at).where(
                        events.c.idempotency_key.in_(keys)
                    )
                )
                expired = []
                for row in rows:
                    if row.created_at >= idempotency_since:
                        seen[row.idempotency_key] = row
                    else:
                        expired.append(row.idempotency_key)
                if expired:
                    conn.execute(
                        update(events).where(events.c.idempotency_key.in_(expired)).values(idempotency_key=None)
                    )
            subscribers: dict[str, list[int]] = defaultdict(list)
            for hook in conn.execute(select(webhooks.c.id, webhooks.c.events).where(webhooks.c.enabled.is_(True))):
                for event_type in hook.events:
                    subscribers[event_type].append(hook.id)

            results: list[StoredEvent] = []
            event_rows: list[dict[str, Any]] = []
            delivery_rows: list[dict[str, Any]] = []
            batch_keys: dict[str, StoredEvent] = {}
            for new in new_events:
                key = new.idempotency_key
                if key and key in batch_keys:
                    first_in_batch = batch_keys[key]
                    results.append(StoredEvent(first_in_batch.id, first_in_batch.type, first_in_batch.queued, True))
                    continue
                event_row = {
                    "id": new.id,
                    "type": new.type,
                    "body": new.body,
                    "created_at": now,
                    "idempotency_key": key,
                    "problems": new.problems,
                }
                first = seen.get(key) if key else None
                if key and first is None and not self._insert_keyed(conn, event_row):
                    # Another transaction published this key since we looked: it won.
                    first = (
                        conn.execute(select(events.c.id, events.c.type).where(events.c.idempotency_key == key))
                    ).one()
                if first is not None:
                    queued = conn.scalar(
                        select(func.count()).select_from(deliveries).where(deliveries.c.event_id == first.id)
                    )
                    results.append(StoredEvent(first.id, first.type, int(queued or 0), True))
                    continue
                if not key:
                    event_rows.append(event_row)
                targets = subscribers.get(new.type, ())
                delivery_rows.extend(
                    {
                        "webhook_id": hook_id,
                        "event_id": new.id,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for hook_id in targets
                )
                stored = StoredEvent(new.id, new.type, len(targets), False)
                if key:
                    batch_keys[key] = stored
                results.append(stored)
            if event_rows:
                conn.execute(insert(events), event_rows)
            if delivery_rows:
                conn.execute(insert(deliveries), delivery_rows)
                self._announce_work(conn)
            return results

        return await self._write(work)

    def _insert_keyed(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Insert an event with an idempotency key unless the key is taken; on PostgreSQL a
        concurrent publisher of the same key waits for ours to commit, then yields."""
        dialect_insert = pg_insert if self.is_postgres else sqlite_insert
        statement = (
            dialect_insert(events)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(events.c.id)
        )
        return conn.execute(statement).first() is not None
