"""The outbox's hot path: a group of events without idempotency keys and their deliveries,
written with statements run on the driver's own cursor.

Publishing is the front door: SQLAlchemy's compile, per-row parameter processing and result
objects cost more than the database's own work on a group of a few dozen events. On SQLite a
statement is a C call, so the subscribers are read and the delivery rows built here, each table
written with one executemany. On PostgreSQL a round trip costs far more than the server's work,
so the whole transaction travels at once on a pipelined connection: the events as arrays, their
deliveries with one INSERT ... SELECT from the subscribed webhooks (counted per event, and the
workers notified, by the same statement), and the commit."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from webhook_mcp.storage.pipeline import HotTransaction
from webhook_mcp.storage.records import NewEvent, StoredEvent

SQLITE_SUBSCRIBERS = "SELECT id, tenant_id, events FROM webhooks WHERE enabled = 1 AND tenant_id IN ({}) ORDER BY id"
SQLITE_EVENTS = "INSERT INTO events (id, tenant_id, type, body, created_at, problems) VALUES (?, ?, ?, ?, ?, ?)"
SQLITE_DELIVERIES = (
    "INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at)"
    " VALUES (?, ?, 'pending', 0, ?, ?, ?)"
)

# The bodies travel as one JSON array of strings: orjson escapes them in C, where psycopg would
# quote each element of a text[] (a body's every '"') with a regular expression, in Python.
POSTGRES_EVENTS = """
INSERT INTO events (id, tenant_id, type, body, created_at, problems)
SELECT id, tenant_id, type, body, %(now)s, problems
FROM unnest(
    %(ids)s::text[],
    %(tenants)s::int[],
    %(types)s::text[],
    ARRAY(SELECT body FROM json_array_elements_text(%(bodies)s::json) WITH ORDINALITY AS b (body, n) ORDER BY n),
    %(problems)s::text[]
) AS new (id, tenant_id, type, body, problems)
"""
# Deliveries get their ids in the events' order, as one by one (claims take the oldest first).
# pg_notify runs once per event with deliveries; PostgreSQL folds the repeats into one notification.
POSTGRES_DELIVERIES = """
WITH queued AS (
    INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at)
    SELECT w.id, new.id, 'pending', 0, %(now)s, %(now)s, %(now)s
    FROM unnest(%(ids)s::text[], %(tenants)s::int[], %(types)s::text[]) WITH ORDINALITY
        AS new (id, tenant_id, type, position)
    JOIN webhooks w ON w.tenant_id = new.tenant_id AND w.enabled AND w.events::jsonb ? new.type
    ORDER BY new.position, w.id
    RETURNING event_id
)
SELECT event_id, count(*), pg_notify(%(channel)s, '') IS NULL FROM queued GROUP BY event_id
"""


def _subscribers(conn: Connection, tenants: set[int]) -> dict[tuple[int, str], list[int]]:
    """Enabled webhooks of these tenants, by tenant and subscribed event type."""
    subscribers: dict[tuple[int, str], list[int]] = defaultdict(list)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(SQLITE_SUBSCRIBERS.format(", ".join("?" * len(tenants))), sorted(tenants))
        for hook_id, tenant_id, types in cursor.fetchall():
            for event_type in json.loads(types) if isinstance(types, str) else types:
                subscribers[tenant_id, event_type].append(hook_id)
    finally:
        cursor.close()
    return subscribers


def write_sqlite(conn: Connection, new_events: Sequence[NewEvent], now: float) -> list[StoredEvent]:
    """Events without idempotency keys and their deliveries, in the transaction ``conn`` holds."""
    subscribers = _subscribers(conn, {new.tenant_id for new in new_events})
    results = []
    deliveries: list[tuple[int, str, float, float, float]] = []
    for new in new_events:
        targets = subscribers.get((new.tenant_id, new.type), ())
        deliveries.extend((hook_id, new.id, now, now, now) for hook_id in targets)
        results.append(StoredEvent(new.id, new.type, len(targets), False))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows = [(new.id, new.tenant_id, new.type, new.body, now, new.problems) for new in new_events]
        cursor.executemany(SQLITE_EVENTS, rows)
        if deliveries:
            cursor.executemany(SQLITE_DELIVERIES, deliveries)
    finally:
        cursor.close()
    return results


def write_postgres(
    transaction: HotTransaction, new_events: Sequence[NewEvent], now: float, channel: str
) -> list[StoredEvent]:
    """The same on PostgreSQL, in one round trip: the commit goes with the last statement."""
    arrays: dict[str, Any] = {
        "now": now,
        "ids": [new.id for new in new_events],
        "tenants": [new.tenant_id for new in new_events],
        "types": [new.type for new in new_events],
    }
    transaction.send(
        POSTGRES_EVENTS,
        arrays
        | {
            "bodies": orjson.dumps([new.body for new in new_events]).decode(),
            "problems": [n.problems for n in new_events],
        },
    )
    queued = {
        event_id: int(count)
        for event_id, count, _ in transaction.fetch(POSTGRES_DELIVERIES, arrays | {"channel": channel}, last=True)
    }
    return [StoredEvent(new.id, new.type, queued.get(new.id, 0), False) for new in new_events]
