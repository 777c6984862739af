"""Publishing: the outbox (an event and its deliveries in one transaction) and idempotency keys."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Executable, func, insert, select, update

from webhook_mcp.storage import outbox
from webhook_mcp.storage.base import WORK_CHANNEL, StoreBase
from webhook_mcp.storage.records import (
    NewEvent,
    StoredEvent,
)
from webhook_mcp.storage.schema import (
    deliveries,
    events,
    webhooks,
)


def _delivery_rows(event_id: str, targets: Sequence[int], now: float) -> list[dict[str, Any]]:
    return [
        {
            "webhook_id": hook_id,
            "event_id": event_id,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for hook_id in targets
    ]


# An idempotency key is its tenant's own: (tenant_id, key).
TenantKey = tuple[int, str]


def _recent_keys(conn: Connection, keys: set[TenantKey], since: float) -> dict[TenantKey, Any]:
    """The events already published with these idempotency keys within the window; keys older
    than the window are released, so they can be used again."""
    seen: dict[TenantKey, Any] = {}
    if not keys:
        return seen
    e = events.c
    query = select(e.id, e.type, e.tenant_id, e.idempotency_key, e.created_at)
    rows = conn.execute(query.where(e.idempotency_key.in_({key for _, key in keys})))
    expired = []
    for row in rows:
        if (row.tenant_id, row.idempotency_key) not in keys:
            continue  # another tenant's key
        if row.created_at >= since:
            seen[row.tenant_id, row.idempotency_key] = row
        else:
            expired.append(row.id)
    if expired:
        conn.execute(update(events).where(e.id.in_(expired)).values(idempotency_key=None))
    return seen


def _subscribers(conn: Connection) -> dict[tuple[int, str], list[int]]:
    """Enabled webhooks by their tenant and the event types they subscribe to."""
    subscribers: dict[tuple[int, str], list[int]] = defaultdict(list)
    w = webhooks.c
    for hook in conn.execute(select(w.id, w.tenant_id, w.events).where(w.enabled.is_(True))):
        for event_type in hook.events:
            subscribers[hook.tenant_id, event_type].append(hook.id)
    return subscribers


class EventQueries(StoreBase):
    async def publish(self, new_events: Sequence[NewEvent], now: float, idempotency_since: float) -> list[StoredEvent]:
        """The outbox: events and their deliveries are committed together, so nothing published
        can be lost, and an idempotency key seen within the window returns the first event. A
        view for one tenant publishes for that tenant, whatever the events say."""
        if self.tenant_id is not None:
            new_events = [replace(e, tenant_id=self.tenant_id) for e in new_events]
        if not any(new.idempotency_key for new in new_events):
            return await self._publish_unkeyed(new_events, now)

        def work(conn: Connection) -> list[StoredEvent]:
            keys = {(e.tenant_id, e.idempotency_key) for e in new_events if e.idempotency_key}
            seen = _recent_keys(conn, keys, idempotency_since)
            subscribers = _subscribers(conn)
            results: list[StoredEvent] = []
            event_rows: list[dict[str, Any]] = []
            delivery_rows: list[dict[str, Any]] = []
            batch_keys: dict[TenantKey, StoredEvent] = {}
            for new in new_events:
                key = new.idempotency_key
                if key and (new.tenant_id, key) in batch_keys:
                    first_in_batch = batch_keys[new.tenant_id, key]
                    results.append(StoredEvent(first_in_batch.id, first_in_batch.type, first_in_batch.queued, True))
                    continue
                event_row = {"id": new.id, "tenant_id": new.tenant_id, "type": new.type, "body": new.body}
                event_row["created_at"] = now
                event_row |= {"idempotency_key": key, "problems": new.problems}
                duplicate = self._earlier_with_key(conn, key, event_row, seen) if key else None
                if duplicate is not None:
                    results.append(duplicate)
                    continue
                if not key:
                    event_rows.append(event_row)
                targets = subscribers.get((new.tenant_id, new.type), ())
                delivery_rows.extend(_delivery_rows(new.id, targets, now))
                stored = StoredEvent(new.id, new.type, len(targets), False)
                if key:
                    batch_keys[new.tenant_id, key] = stored
                results.append(stored)
            if event_rows:
                conn.execute(insert(events), event_rows)
            if delivery_rows:
                conn.execute(insert(deliveries), delivery_rows)
                self._announce_work(conn)
            return results

        return await self._write(work)

    async def _publish_unkeyed(self, new_events: Sequence[NewEvent], now: float) -> list[StoredEvent]:
        """The common case, on the driver's own cursor (see ``storage.outbox``)."""
        if self._pipelined is None:
            return await self._write(lambda conn: outbox.write_sqlite(conn, new_events, now))
        pipelined = self._pipelined
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, pipelined.run, lambda tx: outbox.write_postgres(tx, new_events, now, WORK_CHANNEL)
        )

    def _earlier_with_key(
        self, conn: Connection, key: str, event_row: dict[str, Any], seen: dict[TenantKey, Any]
    ) -> StoredEvent | None:
        """The earlier event with this idempotency key, or None once ``event_row`` is inserted
        under it (a concurrent publisher of the same key may win the insert: its event is returned)."""
        tenant_id = event_row["tenant_id"]
        first = seen.get((tenant_id, key))
        if first is None and not self._insert_keyed(conn, event_row):
            e = events.c
            first = conn.execute(select(e.id, e.type).where(e.tenant_id == tenant_id, e.idempotency_key == key)).one()
        if first is None:
            return None
        queued = conn.scalar(select(func.count()).select_from(deliveries).where(deliveries.c.event_id == first.id))
        return StoredEvent(first.id, first.type, int(queued or 0), True)

    def _insert_keyed(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Insert an event with an idempotency key unless the key is taken; on PostgreSQL a
        concurrent publisher of the same key waits for ours to commit, then yields."""
        if self.is_postgres:  # each dialect's module is imported only where it runs
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement: Executable = (
                pg_insert(events)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(events.c.id)
            )
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = (
                sqlite_insert(events)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(events.c.id)
            )
        return conn.execute(statement).first() is not None
