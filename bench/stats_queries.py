"""Latency of get_webhook_logs and get_webhook_stats on a large attempt log.

Target: with 1,000,000 attempt rows, the first page of get_webhook_logs and
get_webhook_stats for one webhook each answer in under 50 ms, on SQLite and on PostgreSQL.

    .venv/bin/python bench/stats_queries.py                      # SQLite in a temp dir, 1,000,000 rows
    .venv/bin/python bench/stats_queries.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/stats_queries.py --rows 200000 --json

Filling: a seeded simulation of --days (30) days of traffic up to now, to --webhooks webhooks; a
"hot" one gets --hot-share of the new deliveries. Every attempt is written by the real write path,
``Store.record_attempts``, in batches of --batch (attempt rows and hourly rollups in one transaction,
as the dispatcher writes them), so the rollups get_webhook_stats reads are exactly what production
would hold; the outcome of each attempt becomes a retry (or not) through the real ``RetryPolicy``.
Attempts are spread evenly over the period; failures are a mix of HTTP 5xx, timeouts and refused
connections, and two outages make realistic retry chains: the hot webhook was down for 2 hours 9
days ago, and one small webhook ("failing") has refused every attempt for the last --outage-hours
(36) hours, so its failure streak hits the 10,000 cap. About 0.05% of attempts are test sends.

Two shortcuts keep 1,000,000 rows at well under a minute on SQLite and about one on PostgreSQL:
- By default the attempts carry no delivery id and no events or deliveries rows are written (the
  queries measured here read deliveries only through small index lookups). --with-deliveries writes
  an event and a delivery per delivery (inserted directly: ``publish`` stamps the current time) and
  records the attempts against them, so record_attempts also moves deliveries to their next state
  and keeps webhook health: the whole write path, 2-3 times slower.
- The secondary indexes of delivery_attempts and deliveries are dropped before the fill and built
  again, from the DDL the migrations created, afterwards (--keep-indexes: keep them).
Then ANALYZE (--no-analyze skips it; the service itself never runs ANALYZE on SQLite).

Timing goes through the real service layer (``Hub.open(settings, dispatch=False)``, then
``hub.service.get_logs`` / ``get_stats``) for the hot webhook, a small one and the failing one:
--warmup untimed calls, then --repeat timed calls; median and max in ms. PASS when the median is
under 50 ms. A missed query (every query with --explain) gets its SQL statements, each timed on its
own, and the plan of the slowest: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on
SQLite. --keep keeps the filled database and --reuse times another run on it, e.g. after adding an
index (Hub.open runs the migrations first).

The answers are checked against the log itself: get_stats totals (all time and last 24 hours),
successes and test counts against COUNT(*) on delivery_attempts, the failure streak against the rows
after the last success, and the first log pages against the newest row ids.

Exit status: 0 when the run completes (targets missed or not), 3 when a check found a wrong answer,
1 on other errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import heapq
import ipaddress
import itertools
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, event, func, insert, select, update
from sqlalchemy.engine import make_url

from webhook_mcp import Hub, Settings
from webhook_mcp.delivery.retries import RetryPolicy
from webhook_mcp.delivery.sender import SendOutcome
from webhook_mcp.interfaces.cli import run
from webhook_mcp.storage.logs import STREAK_LIMIT
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import attempt_rollups, deliveries, delivery_attempts, events

TARGET_MS = 50.0
DAY = 86400.0
HOUR = 3600.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- database ------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(database_url: str | None, keep: bool, reuse: bool) -> Iterator[str]:
    """A fresh SQLite file in a temp dir, the SQLite file given, or a scratch PostgreSQL database
    created on the given server and dropped afterwards (unless kept). ``reuse``: the URL as given."""
    if reuse or (database_url and database_url.startswith("sqlite")):
        yield str(database_url)
        return
    if not database_url:
        if keep:
            url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='webhook-stats-bench-')) / 'bench.db'}"
            try:
                yield url
            finally:
                log(f"kept the database: --reuse --database-url {url}")
            return
        with tempfile.TemporaryDirectory(prefix="webhook-stats-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    import psycopg

    admin_url = database_url.replace("postgres://", "postgresql://", 1).replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    base = admin_url.rsplit("/", 1)[0]
    name = f"webhook_stats_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SystemExit(
            f"error: could not create a scratch database through {database_url}: {exc}".strip()
            + "\n(give a PostgreSQL URL whose user may CREATE DATABASE, e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        ) from exc
    try:
        yield f"{base}/{name}"
    finally:
        if keep:
            log(f"kept the database: --reuse --database-url {base}/{name} (drop it when done)")
        else:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- simulated traffic ---------------------------------------------------------------------------


@dataclass
class Profile:
    """How one webhook behaves: its share of new deliveries, failure rate outside outages,
    typical response time, and outages (every attempt in them fails)."""

    role: str
    share: float
    fail_rate: float
    median_ms: float
    event_types: tuple[str, ...]
    outages: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, "503"|"refused"
    webhook_id: int = 0


ORDER_TYPES = ("order.created", "order.paid", "order.shipped", "order.updated", "order.cancelled")
OTHER_TYPES = (
    ("customer.created", "customer.updated"),
    ("payment.completed", "payment.failed", "payment.refunded"),
    ("product.created", "product.updated", "product.deleted"),
    ("inventory.low_stock",),
    ("order.created", "order.refunded"),
)


def make_profiles(count: int, hot_share: float, outage_hours: float, now: float, rng: random.Random) -> list[Profile]:
    small_share = (1.0 - hot_share) / (count - 1)
    hot = Profile("hot", hot_share, 0.02, 120.0, ORDER_TYPES, [(now - 9 * DAY, now - 9 * DAY + 2 * HOUR, "503")])
    failing = Profile(
        "failing", small_share, 0.05, 300.0, OTHER_TYPES[0], [(now - outage_hours * HOUR, now + DAY, "refused")]
    )
    profiles = [hot, failing]
    for i in range(2, count):
        profiles.append(
            Profile(
                "small" if i == 2 else f"other{i}",
                small_share,
                rng.uniform(0.005, 0.08),
                rng.uniform(40.0, 600.0),
                OTHER_TYPES[i % len(OTHER_TYPES)],
            )
        )
    return profiles


def outcome_for(profile: Profile, at: float, rng: random.Random) -> SendOutcome:
    """A sender outcome as the real sender would report it."""
    outage = next((kind for start, end, kind in profile.outages if start <= at < end), None)
    if outage == "refused" or (outage is None and rng.random() < profile.fail_rate):
        kind = "refused" if outage else rng.choices(("5xx", "timeout", "refused"), (60, 25, 15))[0]
    elif outage == "503":
        kind = "503"
    else:
        ms = round(min(profile.median_ms * rng.lognormvariate(0.0, 0.6), 9000.0), 1)
        status = rng.choices((200, 202, 204), (90, 8, 2))[0]
        return SendOutcome(True, status, ms, None, "" if status == 204 else '{"received":true}', None)
    if kind == "timeout":
        ms = round(10000.0 + rng.uniform(0.5, 30.0), 1)
        return SendOutcome(False, None, ms, "timed out after 10.0s waiting for a response", "", None)
    if kind == "refused":
        ms = round(rng.uniform(0.3, 4.0), 1)
        return SendOutcome(False, None, ms, "connection refused by hooks.example.net:443", "", None)
    status = 503 if kind == "503" else rng.choice((500, 502, 503))
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[status]
    excerpt = f"<html><head><title>{status} {reason}</title></head><body><h1>{reason}</h1></body></html>"
    ms = round(rng.uniform(15.0, 300.0), 1)
    return SendOutcome(False, status, ms, f"HTTP {status} {reason}", excerpt, None)


@dataclass
class Batch:
    records: list[AttemptRecord] = field(default_factory=list)
    new_events: list[dict[str, Any]] = field(default_factory=list)
    new_deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass(order=True)
class Retry:
    due: float
    seq: int
    delivery_id: int = field(compare=False)
    profile: Profile = field(compare=False)
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    attempt_number: int = field(compare=False)


def simulate(
    profiles: list[Profile],
    rows: int,
    start: float,
    end: float,
    batch_size: int,
    seed: int,
    settings: Settings,
    attempt_counts: dict[int, int],
    with_deliveries: bool,
) -> Iterator[Batch]:
    """Exactly ``rows`` attempts in time order: row i is made in the i-th of ``rows`` equal slices of
    [start, end); a slice goes to the earliest retry that is due, else to a new delivery (or now and
    then a test send) for a webhook picked by share. ``attempt_counts`` gets the attempt count of
    every delivery that was retried. Without ``with_deliveries`` the batches carry no events or
    deliveries rows and the attempts no delivery id."""
    rng = random.Random(seed)
    random.seed(seed)  # RetryPolicy's jitter
    policy = RetryPolicy.from_settings(settings)
    cum_weights = list(itertools.accumulate(p.share for p in profiles))
    step = (end - start) / rows
    due: list[Retry] = []
    delivery_id = 0
    seq = 0
    batch = Batch()
    for i in range(rows):
        at = start + (i + rng.random()) * step
        retry: Retry | None = heapq.heappop(due) if due and due[0].due <= at else None
        if retry is not None:
            profile, event_id, event_type, number, this_delivery = (
                retry.profile,
                retry.event_id,
                retry.event_type,
                retry.attempt_number,
                retry.delivery_id,
            )
            attempt_counts[this_delivery] = number
        else:
            profile = rng.choices(profiles, cum_weights=cum_weights)[0]
            event_id = f"evt_{rng.getrandbits(128):032x}"
            number = 1
            if rng.random() < 0.0005:
                this_delivery = 0
                event_type = "webhook.test"
            else:
                delivery_id += 1
                this_delivery = delivery_id
                event_type = rng.choice(profile.event_types)
            if this_delivery and with_deliveries:
                body = (
                    f'{{"id":"{event_id}","type":"{event_type}","timestamp":{int(at)},'
                    f'"data":{{"id":"obj_{delivery_id}","status":"ok"}}}}'
                )
                batch.new_events.append({"id": event_id, "type": event_type, "body": body, "created_at": at})
                batch.new_deliveries.append(
                    {
                        "id": delivery_id,
                        "webhook_id": profile.webhook_id,
                        "event_id": event_id,
                        "state": "pending",
                        "attempts": 1,
                        "next_attempt_at": at,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
        outcome = outcome_for(profile, at, rng)
        if this_delivery:
            decision = policy.decide(outcome, number, at)
            state, next_at = decision.state, decision.next_attempt_at
            if state == "pending" and next_at is not None:
                seq += 1
                heapq.heappush(due, Retry(next_at, seq, this_delivery, profile, event_id, event_type, number + 1))
        else:
            state, next_at = "succeeded", None
        batch.records.append(
            AttemptRecord(
                delivery_id=this_delivery if this_delivery and with_deliveries else None,
                webhook_id=profile.webhook_id,
                event_id=event_id,
                event_type=event_type,
                attempt_number=number,
                is_test=not this_delivery,
                created_at=at,
                status_code=outcome.status_code,
                response_ms=outcome.response_ms,
                success=outcome.success,
                error=outcome.error,
                response_excerpt=outcome.response_excerpt,
                next_state=state,
                next_attempt_at=next_at,
            )
        )
        if len(batch.records) >= batch_size:
            yield batch
            batch = Batch()
    if batch.records:
        yield batch


def write_parents(engine: Engine, batch: Batch) -> None:
    """The events and deliveries a batch's attempts belong to."""
    if batch.new_events:
        with engine.begin() as conn:
            conn.execute(insert(events), batch.new_events)
            conn.execute(insert(deliveries), batch.new_deliveries)


LOADED_TABLES = ["delivery_attempts", "deliveries"]


def drop_secondary_indexes(engine: Engine) -> list[tuple[str, str]]:
    """Drop the plain indexes of the tables being loaded and return their exact DDL, as the
    migrations built them: building an index once after a bulk load is cheaper than keeping it
    up to date row by row. Primary keys and unique constraints stay."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            found = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%(tables)s) "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                {"tables": LOADED_TABLES},
            ).all()
        else:
            found = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (?, ?)",
                tuple(LOADED_TABLES),
            ).all()
        for name, _ddl in found:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
    return [(name, ddl) for name, ddl in found]


def create_indexes(engine: Engine, indexes: list[tuple[str, str]]) -> None:
    with engine.begin() as conn:
        for _name, ddl in indexes:
            conn.exec_driver_sql(ddl)


def finish_fill(engine: Engine, attempt_counts: dict[int, int]) -> None:
    """What the claims would have counted (deliveries were inserted with 1 attempt) and the id
    sequence (deliveries got explicit ids)."""
    with engine.begin() as conn:
        d = deliveries.c
        retried = [{"b_id": delivery, "b_attempts": n} for delivery, n in attempt_counts.items()]
        if retried:
            counted = update(deliveries).where(d.id == bindparam("b_id")).values(attempts=bindparam("b_attempts"))
            conn.execute(counted, retried)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), (SELECT max(id) FROM deliveries))"
            )


def analyze(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


async def fill(hub: Hub, args: argparse.Namespace, result: dict[str, Any]) -> None:
    store = hub.store
    if await store.scalar(select(func.count()).select_from(delivery_attempts)):
        raise SystemExit(f"error: {hub.settings.database_url} already holds attempts; give an empty or new database")
    now = time.time()
    rng = random.Random(args.seed)
    profiles = make_profiles(args.webhooks, args.hot_share, args.outage_hours, now, rng)
    for i, profile in enumerate(profiles):
        hook = await hub.service.create_webhook(
            f"http://127.0.0.1:{9000 + i}/hooks/{profile.role}", list(profile.event_types), f"bench {profile.role}"
        )
        profile.webhook_id = hook.id
    log(f"filling {args.rows:,} attempts (pid {os.getpid()})")
    t0 = time.perf_counter()
    indexes = [] if args.keep_indexes else await asyncio.to_thread(drop_secondary_indexes, store.engine)
    attempt_counts: dict[int, int] = {}
    batches = simulate(
        profiles,
        args.rows,
        now - args.days * DAY,
        now,
        args.batch,
        args.seed,
        hub.settings,
        attempt_counts,
        args.with_deliveries,
    )
    written = 0
    recording: asyncio.Task[list[int]] | None = None
    try:
        # Batch k+1 is simulated (and on PostgreSQL its parent rows written) while batch k is
        # recorded; batches are recorded one after the other, in time order, as the dispatcher would.
        # SQLite has one writer: there the parents wait, rather than spin on the write lock.
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            if recording is not None and not store.is_postgres:
                await recording
            await asyncio.to_thread(write_parents, store.engine, batch)
            if recording is not None:
                await recording
            recording = asyncio.create_task(store.record_attempts(batch.records, batch.records[-1].created_at))
            before, written = written, written + len(batch.records)
            if written // 100_000 != before // 100_000:
                log(f"  {written:,} rows, {time.perf_counter() - t0:.1f} s")
        if recording is not None:
            await recording
        if args.with_deliveries:
            await asyncio.to_thread(finish_fill, store.engine, attempt_counts)
    finally:
        t1 = time.perf_counter()
        await asyncio.to_thread(create_indexes, store.engine, indexes)  # also after a failure: no half schema
    t2 = time.perf_counter()
    if not args.no_analyze:
        await asyncio.to_thread(analyze, store.engine)
    result["fill_seconds"] = round(t2 - t0, 1)
    result["fill_rows_per_s"] = round(args.rows / (t2 - t0))
    result["index_build_seconds"] = round(t2 - t1, 1) if indexes else None
    result["analyze_seconds"] = None if args.no_analyze else round(time.perf_counter() - t2, 1)


def sqlite_size(path: str) -> int:
    return sum(Path(p).stat().st_size for p in (path, path + "-wal") if Path(p).exists())


async def describe_data(hub: Hub, result: dict[str, Any]) -> None:
    store = hub.store
    d = deliveries.c
    states: list[Any] = await store.fetch_all(select(d.state, func.count()).group_by(d.state).order_by(d.state))
    result["deliveries"] = {row[0]: row[1] for row in states}
    result["rollup_rows"] = await store.scalar(select(func.count()).select_from(attempt_rollups))
    if store.is_postgres:
        size = await store.scalar(select(func.pg_database_size(func.current_database())))
    else:
        size = await asyncio.to_thread(sqlite_size, store.engine.url.database or "")
    result["database_mb"] = round(size / 2**20)


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Statement:
    sql: str
    parameters: Any
    ms: float = 0.0


@contextlib.contextmanager
def captured_sql(engine: Engine) -> Iterator[list[Statement]]:
    """Every statement the engine runs meanwhile, with its parameters."""
    statements: list[Statement] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append(Statement(statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def time_selects(engine: Engine, statements: list[Statement], runs: int = 3) -> list[Statement]:
    """Run each captured SELECT again on its own, rows fetched (SQLite does the work while they
    are fetched, after the cursor events), and keep its best time."""
    timed = []
    with engine.connect() as conn:
        for statement in statements:
            if not statement.sql.lstrip().upper().startswith("SELECT"):
                continue
            best = float("inf")
            for _ in range(runs):
                t0 = time.perf_counter()
                conn.exec_driver_sql(statement.sql, statement.parameters).all()
                best = min(best, (time.perf_counter() - t0) * 1000)
            statement.ms = best
            timed.append(statement)
    return timed


def explain(engine: Engine, statement: Statement) -> list[str]:
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement.sql, statement.parameters).all()
    if engine.dialect.name == "postgresql":
        return [row[0] for row in rows]
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:  # SQLite: a tree given as (id, parent, _, detail)
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


@dataclass
class Query:
    name: str
    webhook: str
    call: Callable[[], Awaitable[Any]]
    samples: list[float] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def passed(self) -> bool:
        return self.median < TARGET_MS


async def measure(hub: Hub, targets: list[tuple[str, int, int]], args: argparse.Namespace) -> list[Query]:
    service = hub.service
    queries: list[Query] = []
    for label, hook, rows in targets:
        who = f"{label} #{hook} ({rows:,} rows)"
        queries += [
            Query("get_logs first page", who, functools.partial(service.get_logs, hook)),
            Query("get_logs status=failed", who, functools.partial(service.get_logs, hook, status="failed")),
            Query("get_logs status=test", who, functools.partial(service.get_logs, hook, status="test")),
            Query("get_stats", who, functools.partial(service.get_stats, hook)),
            Query("get_stats window_hours=24", who, functools.partial(service.get_stats, hook, window_hours=24)),
        ]
    for query in queries:
        for _ in range(args.warmup):
            await query.call()
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            await query.call()
            query.samples.append((time.perf_counter() - t0) * 1000)
        with captured_sql(hub.store.engine) as statements:
            await query.call()
        query.statements = await asyncio.to_thread(time_selects, hub.store.engine, statements)
        if query.statements and (args.explain or not query.passed):
            slowest = max(query.statements, key=lambda s: s.ms)
            query.plan = await asyncio.to_thread(explain, hub.store.engine, slowest)
    return queries


# -- checking ------------------------------------------------------------------------------------


async def check_answers(hub: Hub, targets: list[tuple[str, int, int]]) -> list[tuple[str, bool, str]]:
    """get_stats and get_logs against COUNT(*) and MAX(id) on the log itself."""
    store, service = hub.store, hub.service
    a = delivery_attempts.c
    checks: list[tuple[str, bool, str]] = []

    async def count(*where: Any) -> int:
        return int(await store.scalar(select(func.count()).select_from(delivery_attempts).where(*where)) or 0)

    def compare(what: str, got: Any, expected: Any) -> None:
        checks.append((what, got == expected, f"service {got:,} vs log {expected:,}"))

    for label, hook, _rows in targets:
        mine = a.webhook_id == hook
        stats = await service.get_stats(hook)
        compare(f"{label} #{hook} get_stats total == COUNT(*)", stats.total_attempts, await count(mine))
        compare(f"{label} #{hook} get_stats succeeded", stats.succeeded, await count(mine, a.success.is_(True)))
        compare(f"{label} #{hook} get_stats test_attempts", stats.test_attempts, await count(mine, a.is_test.is_(True)))
        for _ in range(3):  # the window starts at the top of an hour: retry if one began meanwhile
            hour_from = (time.time() - DAY) // HOUR * HOUR
            day = await service.get_stats(hook, window_hours=24)
            if (time.time() - DAY) // HOUR * HOUR == hour_from:
                break
        compare(
            f"{label} #{hook} get_stats(24 h) total", day.total_attempts, await count(mine, a.created_at >= hour_from)
        )
        last_success = await store.scalar(select(func.max(a.id)).where(mine, a.success.is_(True)))
        streak = await count(mine, a.id > (last_success or 0))
        compare(f"{label} #{hook} consecutive_failures", stats.consecutive_failures, min(streak, STREAK_LIMIT))
        for status, where in (("all", ()), ("failed", (a.success.is_(False),))):
            page = [x.attempt_id for x in (await service.get_logs(hook, status=status)).attempts]
            newest = [
                r.id for r in await store.fetch_all(select(a.id).where(mine, *where).order_by(a.id.desc()).limit(20))
            ]
            checks.append(
                (
                    f"{label} #{hook} get_logs(status={status}) first page == newest ids",
                    page == newest,
                    f"{len(page)} ids from {page[0] if page else None} vs {len(newest)} from "
                    f"{newest[0] if newest else None}",
                )
            )
    return checks


# -- the benchmark -------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    settings = Settings(
        database_url=database_url,
        allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")],
        log_level="WARNING",
    )
    result: dict[str, Any] = {
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "rows": args.rows,
        "webhooks": args.webhooks,
        "hot_share": args.hot_share,
        "days": args.days,
        "outage_hours": args.outage_hours,
        "batch": args.batch,
        "with_deliveries": args.with_deliveries,
        "analyzed": not args.no_analyze,
        "indexes_built_after_fill": not args.keep_indexes,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
    }
    async with Hub.open(settings, dispatch=False) as hub:
        if args.reuse:
            result.update(
                fill_seconds=None, rows=await hub.store.scalar(select(func.count()).select_from(delivery_attempts))
            )
        else:
            await fill(hub, args, result)
        await describe_data(hub, result)
        a = delivery_attempts.c
        counts: list[Any] = await hub.store.fetch_all(select(a.webhook_id, func.count()).group_by(a.webhook_id))
        per_hook = {row[0]: row[1] for row in counts}
        by_description = {w.description: w.id for w in (await hub.service.list_webhooks()).webhooks}
        result["webhooks"] = len(by_description)
        targets: list[tuple[str, int, int]] = []
        for label in ("hot", "small", "failing"):
            hook = by_description.get(f"bench {label}")
            if hook is None:
                raise SystemExit(
                    f"error: no webhook described 'bench {label}': --reuse needs a database filled by this script"
                )
            targets.append((label, hook, int(per_hook.get(hook, 0))))
        result["rows_per_webhook"] = {label: rows for label, _hook, rows in targets}
        log("checking answers")
        checks = await check_answers(hub, targets)
        log("timing queries")
        queries = await measure(hub, targets, args)
    result["checks"] = [{"check": what, "ok": ok, "detail": detail} for what, ok, detail in checks]
    result["queries"] = [
        {
            "query": q.name,
            "webhook": q.webhook,
            "median_ms": round(q.median, 2),
            "max_ms": round(max(q.samples), 2),
            "min_ms": round(min(q.samples), 2),
            "pass": q.passed,
            "selects": [{"ms": round(st.ms, 2), "sql": " ".join(st.sql.split())} for st in q.statements],
            "plan": q.plan,
        }
        for q in queries
    ]
    return result


def short(sql: str, limit: int = 160) -> str:
    """One line, long column lists elided: what a statement reads from, and how."""
    sql = re.sub(r"^SELECT (.{60,}?) FROM ", "SELECT ... FROM ", " ".join(sql.split()))
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


def print_report(r: dict[str, Any]) -> None:
    rows = r["rows_per_webhook"]
    print(
        f"webhook-mcp stats/logs query benchmark: {r['database']}, {r['rows']:,} attempts over {r['days']:g} days, "
        f"{r['webhooks']} webhooks (hot {rows['hot']:,}, small {rows['small']:,}, failing {rows['failing']:,} rows)"
    )
    if r["fill_seconds"] is None:
        print("  fill    : none, an earlier run's database (--reuse)")
    else:
        analyzed = "not analyzed" if r["analyze_seconds"] is None else f"ANALYZE {r['analyze_seconds']:.1f} s"
        built = (
            "indexes kept"
            if r["index_build_seconds"] is None
            else f"indexes built after, {r['index_build_seconds']:.1f} s"
        )
        print(
            f"  fill    : {r['fill_seconds']:.1f} s ({r['fill_rows_per_s']:,} rows/s through Store.record_attempts in "
            f"batches of {r['batch']:,}; {built}); {analyzed}"
        )
    states = ", ".join(f"{state} {n:,}" for state, n in r["deliveries"].items()) or "none (attempts only)"
    print(f"  data    : deliveries {states}; {r['rollup_rows']:,} rollup rows; database {r['database_mb']:,} MB")
    for c in r["checks"]:
        print(f"  {'ok  ' if c['ok'] else 'BAD '}  {c['check']}: {c['detail']}")
    print(f"  timings : {r['warmup']} warm-up calls, then median / max of {r['repeat']} (target {TARGET_MS:g} ms)")
    for q in r["queries"]:
        slowest = max(q["selects"], key=lambda st: st["ms"], default=None)
        print(
            f"  {'PASS' if q['pass'] else 'MISS'}  {q['query']:<26} {q['webhook']:<30} "
            f"{q['median_ms']:7.2f} ms {q['max_ms']:7.2f} ms max   ({len(q['selects'])} SELECTs, slowest "
            f"{slowest['ms'] if slowest else 0:.2f} ms alone)"
        )
        if q["plan"] and slowest:
            for st in sorted(q["selects"], key=lambda st: -st["ms"]):
                print(f"        {st['ms']:7.2f} ms  {short(st['sql'])}")
            print(f"        plan of the slowest: {slowest['sql']}")
            for line in q["plan"]:
                print(f"          {line}")
    worst = max(r["queries"], key=lambda q: q["median_ms"])
    passed = sum(q["pass"] for q in r["queries"])
    filled = "reused" if r["fill_seconds"] is None else f"{r['fill_seconds']:.0f}s"
    print(
        f"SUMMARY {r['database']} rows={r['rows']} fill={filled} "
        f"worst_median={worst['median_ms']:.1f}ms ({worst['query']}, {worst['webhook'].split(' (')[0]}) "
        f"worst_max={max(q['max_ms'] for q in r['queries']):.1f}ms "
        f"{passed}/{len(r['queries'])} PASS checks={'ok' if all(c['ok'] for c in r['checks']) else 'BAD'}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fill a database with a large simulated attempt log through the real write path, then time "
        "get_webhook_logs and get_webhook_stats against the 50 ms target.",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: a fresh SQLite file in a temp dir. sqlite:///file: that (empty or new) file, kept. "
        "postgresql://user@host:port/db: a scratch database is created on that server (connecting to db "
        "as admin) and dropped afterwards.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="attempt rows to write (default 1000000)")
    parser.add_argument("--webhooks", type=int, default=10, help="webhooks, at least 3 (default 10)")
    parser.add_argument(
        "--hot-share", type=float, default=0.6, help="share of new deliveries for the hot webhook (default 0.6)"
    )
    parser.add_argument("--days", type=float, default=30.0, help="days of history, ending now (default 30)")
    parser.add_argument(
        "--outage-hours",
        type=float,
        default=36.0,
        help="the failing webhook has refused every attempt for this many hours, up to now (default 36; "
        "more than --days * 24: it never succeeded)",
    )
    parser.add_argument("--batch", type=int, default=10_000, help="attempts per record_attempts call (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per query first (default 2)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per query (default 20)")
    parser.add_argument(
        "--with-deliveries",
        action="store_true",
        help="also write an event and a delivery row for every delivery, and record attempts against them "
        "(the whole write path, about 2-3 times slower to fill)",
    )
    parser.add_argument("--no-analyze", action="store_true", help="skip ANALYZE after filling")
    parser.add_argument(
        "--keep-indexes",
        action="store_true",
        help="keep every index while filling (slower) instead of building the secondary ones afterwards",
    )
    parser.add_argument("--explain", action="store_true", help="print every query's slowest SQL and its plan")
    parser.add_argument(
        "--keep", action="store_true", help="keep the filled database (temp SQLite file or scratch PostgreSQL database)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="skip filling: time the queries on the --database-url that an earlier --keep run filled (as is; "
        "migrations run first, so a new index is picked up). Reuse it soon: the data ends when it was filled",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    args = parser.parse_args(argv)
    if args.reuse and not args.database_url:
        parser.error("--reuse needs the --database-url of a database an earlier --keep run filled")
    if args.reuse and args.database_url.startswith("sqlite"):
        path = make_url(args.database_url).database
        if not path or not Path(path).is_file():
            parser.error(f"--reuse: there is no SQLite file at {args.database_url}")
    if args.rows < 1000:
        parser.error(f"--rows must be at least 1000, got {args.rows}")
    if args.webhooks < 3:
        parser.error(f"--webhooks must be at least 3 (hot, failing and small), got {args.webhooks}")
    if not 0.0 < args.hot_share < 1.0:
        parser.error(f"--hot-share must be between 0 and 1 (exclusive), got {args.hot_share:g}")
    if not 0.0 <= args.outage_hours <= 24 * 366:
        parser.error(f"--outage-hours must be between 0 and {24 * 366}, got {args.outage_hours:g}")
    if not 2.0 <= args.days <= 365.0:
        parser.error(f"--days must be between 2 and 365, got {args.days:g}")
    if args.batch < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--batch and --repeat must be positive and --warmup zero or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    async def bench() -> dict[str, Any]:
        with scratch_database(args.database_url, args.keep, args.reuse) as url:
            return await run_bench(args, url)

    result = run(bench())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if all(c["ok"] for c in result["checks"]) else 3


if __name__ == "__main__":
    sys.exit(main())
