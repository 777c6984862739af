"""Costs that must not grow with the backlog: per-webhook counts kept exact through every change
of state, a claim that looks past a full endpoint without reading its backlog, time-ordered ids."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from conftest import Receiver, make_settings, wait_until
from conftest import queue_due as _fill
from webhook_mcp import Hub
from webhook_mcp.core.ids import new_event_id
from webhook_mcp.storage.claim import Claim, ClaimRequest
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.results import _attempt_row
from webhook_mcp.storage.schema import deliveries, delivery_counts
from webhook_mcp.storage.sql.postgresql import POSTGRES
from webhook_mcp.storage.sql.sqlite import SQLITE

pytestmark = pytest.mark.anyio

EVENT = "order.created"
ReceiverFactory = Callable[..., Awaitable[Receiver]]


def data(hub: Hub) -> Any:
    return hub.catalog.get(EVENT).example


async def counted(hub: Hub, webhook_id: int) -> dict[str, int]:
    c = delivery_counts.c
    rows = await hub.store.fetch_all(select(c.state, func.sum(c.n)).where(c.webhook_id == webhook_id).group_by(c.state))
    return {state: int(n) for state, n in rows if n}


async def actual(hub: Hub, webhook_id: int) -> dict[str, int]:
    d = deliveries.c
    rows = await hub.store.fetch_all(
        select(d.state, func.count()).where(d.webhook_id == webhook_id, d.state != "succeeded").group_by(d.state)
    )
    return dict(Counter({state: int(n) for state, n in rows}))


async def exact(hub: Hub, webhook_id: int, expected: dict[str, int]) -> None:
    """The kept counts, the rows counted one by one, and what stats report all agree."""
    assert await counted(hub, webhook_id) == await actual(hub, webhook_id) == expected
    stats = await hub.service.get_stats(webhook_id)
    reported = {"pending": stats.pending_deliveries, "held": stats.held_deliveries, "failed": stats.failed_deliveries}
    assert {k: v for k, v in reported.items() if v} == expected


async def test_counts_stay_exact_through_every_change(receiver_factory: ReceiverFactory, database_url: str) -> None:
    failing = await receiver_factory(statuses=[503])
    ok = await receiver_factory(statuses=[200])
    async with Hub.open(make_settings(database_url, retry_schedule=(0.0, 0.05))) as hub:
        bad = await hub.service.create_webhook(failing.url, [EVENT])
        good = await hub.service.create_webhook(ok.url, [EVENT])
        await hub.service.publish_many([(EVENT, data(hub), None)] * 5)
        # Sent, failed, retried once, dead: 5 failed; the other webhook's 5 succeeded.
        await wait_until(lambda: _is(actual(hub, bad.id), {"failed": 5}), timeout=10)
        await wait_until(lambda: _is(actual(hub, good.id), {}), timeout=10)
        await exact(hub, bad.id, {"failed": 5})
        await exact(hub, good.id, {})

        # Disabled: revived deliveries and new events wait, held.
        await hub.service.set_enabled(bad.id, False)
        row = (await hub.store.fetch_all(select(deliveries.c.id).where(deliveries.c.webhook_id == bad.id)))[0]
        await hub.service.retry_delivery(row.id)
        await exact(hub, bad.id, {"failed": 4, "held": 1})
        await hub.service.replay_failed(bad.id)
        await exact(hub, bad.id, {"held": 5})

        # Enabled towards a receiver that answers: everything drains to succeeded.
        await hub.service.update_webhook(bad.id, url=ok.url)
        await hub.service.set_enabled(bad.id, True)
        await wait_until(lambda: _is(actual(hub, bad.id), {}), timeout=10)
        await exact(hub, bad.id, {})

        # Deleting a webhook takes its counts with it.
        # (Due work of a disabled webhook, as a dead worker's leases can come due: the claim holds it.)
        await hub.service.set_enabled(good.id, False)
        await _fill(hub, good.id, 3, time.time())
        await wait_until(lambda: _is(actual(hub, good.id), {"held": 3}), timeout=10)
        await exact(hub, good.id, {"held": 3})
        await hub.service.delete_webhook(good.id)
        assert await counted(hub, good.id) == {}


async def _is(value: Awaitable[dict[str, int]], expected: dict[str, int]) -> bool:
    return await value == expected


async def test_counts_exact_through_claims_and_hand_backs(hub: Hub) -> None:
    hook = await hub.service.create_webhook("http://127.0.0.1:9/hook", [EVENT])
    await hub.service.publish_many([(EVENT, data(hub), None)] * 7)
    claimed = await hub.store.claim("w1", 5, time.time(), 30, 64)
    assert len(claimed) == 5
    await exact(hub, hook.id, {"pending": 7})  # leased is still pending
    await hub.store.release([d.id for d in claimed[:2]], time.time())
    await exact(hub, hook.id, {"pending": 7})


def _rows_read(database_url: str, statement: str, params: dict[str, Any]) -> int:
    """Rows the database reads to run ``statement``: SQLite's virtual machine steps (in
    thousands), PostgreSQL's rows over every scan node of the plan, those filtered out included."""
    if database_url.startswith("sqlite"):
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.set_progress_handler(count, 1000)
            conn.execute(statement, params).fetchall()
        return steps
    with psycopg.connect(database_url) as conn:
        read = _plan_rows(conn, statement, params)
        conn.rollback()
    return read


def _plan_rows(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any], table: str | None = None) -> int:
    """PostgreSQL's rows over every scan node of ``statement``'s plan (or only those of ``table``),
    those filtered out included."""
    (plan,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params).fetchone()  # type: ignore[misc]

    def scanned(node: dict[str, Any]) -> int:
        visited = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        counts = "Scan" in node["Node Type"] and table in (None, node.get("Relation Name"))
        own = visited * node.get("Actual Loops", 1) if counts else 0
        return int(own) + sum(scanned(child) for child in node.get("Plans", []))

    return scanned(plan[0]["Plan"])


async def test_looking_past_a_full_endpoint_does_not_read_its_backlog(database_url: str) -> None:
    """The deeper look reads each other webhook's next due rows: its cost is the same behind a
    backlog of 300 or of 3,000."""
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        big = await hub.service.create_webhook("http://127.0.0.1:9/big", [EVENT])
        small = await hub.service.create_webhook("http://127.0.0.1:9/small", ["order.paid"])
        now = time.time()
        await _fill(hub, big.id, 300, now - 600)
        await _fill(hub, small.id, 10, now - 60)
        sql = POSTGRES if hub.store.is_postgres else SQLITE
        params = {
            "now": now,
            "window": 400,
            "full": sql.ids([big.id]),
            "crowded": sql.ids([]),
            "per_hook": 100,
            "lock": False,
            "enough": 100,
            "own_ids": sql.ids([]),
            "own_n": sql.ids([]),
            "cap": 64,
            "ahead": 0,
        }
        await hub.store._write(lambda conn: conn.exec_driver_sql("ANALYZE"))  # plans as in a running system
        before = _rows_read(database_url, sql.probe, params)
        await _fill(hub, big.id, 3000, now - 500)
        await hub.store._write(lambda conn: conn.exec_driver_sql("ANALYZE"))
        after = _rows_read(database_url, sql.probe, params)
        assert after <= before * 1.5 + 2, (before, after)

        # And the claim itself reaches the small webhook past the big one, full of other leases.
        held = await hub.store.claim("other", 64, now, 3600, 64)
        assert {d.webhook_id for d in held} == {big.id} and len(held) == 64
        claimed = await hub.store.claim("me", 50, now, 60, 64)
        assert {d.webhook_id for d in claimed} == {small.id} and len(claimed) == 10


async def test_leasing_reads_the_picked_rows_not_the_backlog(postgres_url: str) -> None:
    """PostgreSQL's claim, planned generically while the table looked small (as each connection
    plans it once), leases the rows it picked by key: behind a backlog of 3,000 rows, a capped
    tenant's claim reads the rows it leases, not every due row once per row picked."""
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        tenant = await hub.store.create_tenant("noisy", time.time())
        hook = await hub.service.for_tenant(tenant.id).create_webhook("http://127.0.0.1:9/noisy", [EVENT])
        await hub.store._write(lambda conn: conn.exec_driver_sql("ANALYZE"))  # statistics of an empty queue
        now = time.time()
        await _fill(hub, hook.id, 3000, now - 600)
        request = ClaimRequest("me", 64, now, 60, 64, {}, 64, 64, True, tenant_cap=64)
        params = Claim(POSTGRES, request, None, None)._params() | {
            "until": now + 60,
            "deeper": True,
            "limit": 64,
            "ahead_limit": 64,
        }
        stale = _lease_reads(postgres_url, params)
        await hub.store._write(lambda conn: conn.exec_driver_sql("ANALYZE"))  # and of the backlog
        fresh = _lease_reads(postgres_url, params)
    assert stale < 1000 and fresh < 1000, (stale, fresh)


async def test_a_plan_made_on_a_small_table_still_reads_by_key(postgres_url: str) -> None:
    """A worker plans its claim once per connection, often when the table is small and was never
    analysed; those plans must not scan the table once a backlog (and its dead rows) has grown:
    the claim reads through its indexes whatever the table looked like when it was planned."""
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        hook = await hub.service.create_webhook("http://127.0.0.1:9/hook", [EVENT])
        now = time.time()
        await _fill(hub, hook.id, 10, now - 700)
        request = ClaimRequest("me", 64, now, 60, 64, {}, 64, 64, True)
        params = Claim(POSTGRES, request, None, None)._params() | {
            "until": now + 60,
            "deeper": True,
            "limit": 64,
            "ahead_limit": 64,
        }
        with psycopg.connect(postgres_url, prepare_threshold=0) as conn:
            _sequential_reads(conn, params)  # planned here, on ten rows
            await _fill(hub, hook.id, 3000, now - 600)
            read = _sequential_reads(conn, params)  # the same plans, run on the backlog
    assert read < 100, read


def _sequential_reads(conn: psycopg.Connection[Any], params: dict[str, Any]) -> int:
    """Rows of ``deliveries`` read by sequential scans in one claim: both statements, as the
    dispatcher sends them, prepared on this connection (and kept: committed, not rolled back)."""
    assert POSTGRES.take is not None and POSTGRES.claim_setup is not None
    conn.execute(POSTGRES.claim_setup)
    (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + POSTGRES.scan, params).fetchone()  # type: ignore[misc]
    assert "JIT" not in plan[0], "the claim must not be compiled: it would cost more than it runs"
    conn.execute(POSTGRES.scan, params, prepare=True)
    conn.execute(POSTGRES.take, params, prepare=True).fetchall()
    (read,) = conn.execute("SELECT pg_stat_get_xact_tuples_returned('deliveries'::regclass)").fetchone()  # type: ignore[misc]
    conn.commit()
    return int(read)


async def test_results_read_their_deliveries_by_key_however_the_table_grew(postgres_url: str) -> None:
    """A batch of results, written many times on a small table (enough for a cached plan), then
    on a backlog: it finishes its deliveries by key, it does not scan the table for them."""
    assert POSTGRES.results_setup is not None
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        hook = await hub.service.create_webhook("http://127.0.0.1:9/hook", [EVENT])
        now = time.time()
        await _fill(hub, hook.id, 10, now - 700)
        with psycopg.connect(postgres_url, prepare_threshold=0) as conn:
            small = conn.execute("SELECT id, event_id FROM deliveries").fetchall()
            for _ in range(8):
                _finish(conn, hook.id, small, now)
            await _fill(hub, hook.id, 3000, now - 600)
            read = _finish(conn, hook.id, small[:5], now)
    assert read < 100, read


def _finish(conn: psycopg.Connection[Any], hook_id: int, found: list[tuple[Any, ...]], now: float) -> int:
    """Write one batch of results for ``found`` (id, event_id) as a worker does; the rows of
    ``deliveries`` read by sequential scans meanwhile."""
    assert POSTGRES.results_setup is not None
    records = [
        AttemptRecord(i, hook_id, event_id, EVENT, 1, False, now, 200, 1.0, True, None, "") for i, event_id in found
    ]
    conn.execute(POSTGRES.results_setup)
    rows = json.dumps([_attempt_row(r, now) for r in records])
    conn.execute(POSTGRES.log_attempts, {"rows": rows, "now": now}, prepare=True)
    (read,) = conn.execute("SELECT pg_stat_get_xact_tuples_returned('deliveries'::regclass)").fetchone()  # type: ignore[misc]
    conn.commit()
    return int(read)


def _lease_reads(postgres_url: str, params: dict[str, Any]) -> int:
    """Rows of ``deliveries`` the claim's second statement reads, on a generic plan."""
    assert POSTGRES.take is not None and POSTGRES.claim_setup is not None
    with psycopg.connect(postgres_url) as conn:
        conn.execute(POSTGRES.claim_setup)
        conn.execute(POSTGRES.scan, params)
        read = _plan_rows(conn, POSTGRES.take, params, table="deliveries")
        conn.rollback()
    return read


def test_event_ids_are_time_ordered_and_keep_their_form() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert all(i.startswith("evt_") and len(i) == 36 and uuid.UUID(i[4:]).version == 7 for i in ids)
    assert len(set(ids)) == len(ids)
    milliseconds = [int(i[4:16], 16) for i in ids]
    assert milliseconds == sorted(milliseconds)
    assert abs(milliseconds[-1] - time.time() * 1000) < 5000
