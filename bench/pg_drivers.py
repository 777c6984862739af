"""Which PostgreSQL driver should the dispatcher use? A claim-and-complete loop, three ways.

Each variant drains the same backlog of pending deliveries with the dispatcher's pattern: claim a
batch (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``), then mark
the batch succeeded, each in its own transaction, from one asyncio process:

- ``psycopg-thread``: SQLAlchemy Core on psycopg 3 (sync), each transaction on a worker thread;
- ``sqlalchemy-asyncpg``: SQLAlchemy's AsyncEngine on asyncpg;
- ``asyncpg``: asyncpg's own pool, no SQLAlchemy.

    .venv/bin/python bench/pg_drivers.py                      # 20,000 rows, batches of 200
    .venv/bin/python bench/pg_drivers.py --rows 50000 --batch 500 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from delivery_throughput import scratch_database
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from webhook_mcp.storage import engine as database

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

CLAIM = (
    "UPDATE deliveries SET lease_owner = 'bench', next_attempt_at = next_attempt_at + 60, attempts = attempts + 1 "
    "WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= {now} "
    "ORDER BY next_attempt_at LIMIT {limit} FOR UPDATE SKIP LOCKED) RETURNING id"
)
COMPLETE = "UPDATE deliveries SET state = 'succeeded', lease_owner = NULL, completed_at = {now} WHERE id = ANY({ids})"


async def _fill(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE deliveries, delivery_attempts, events, webhooks RESTART IDENTITY CASCADE")
        now = time.time()
        await conn.execute(
            "INSERT INTO webhooks (url, events, secret, description, enabled, consecutive_failures, "
            "created_at, updated_at) VALUES ('https://example.com/h', '[\"order.created\"]', 'whsec_x', '', true, "
            "0, $1, $1)",
            now,
        )
        await conn.execute(
            "INSERT INTO events (id, type, body, created_at) "
            "SELECT 'evt_' || g, 'order.created', '{}', $1 FROM generate_series(1, $2) AS g",
            now,
            rows,
        )
        await conn.execute(
            "INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at) "
            "SELECT 1, 'evt_' || g, 'pending', 0, $1, $1, $1 FROM generate_series(1, $2) AS g",
            now - 1,
            rows,
        )
        await conn.execute("ANALYZE deliveries")
    finally:
        await conn.close()


async def _drain(claim_and_complete: Callable[[], Awaitable[int]], rows: int, concurrency: int) -> float:
    done = 0

    async def loop() -> None:
        nonlocal done
        while done < rows:
            got = await claim_and_complete()
            if not got:
                return
            done += got

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def psycopg_thread(url: str, batch: int) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"), pool_size=4)
    claim = CLAIM.format(now="%(now)s", limit="%(limit)s")
    complete = COMPLETE.format(now="%(now)s", ids="%(ids)s")

    def transaction() -> int:
        with engine.begin() as conn:
            ids = [r[0] for r in conn.exec_driver_sql(claim, {"now": time.time(), "limit": batch})]
        if ids:
            with engine.begin() as conn:
                conn.exec_driver_sql(complete, {"now": time.time(), "ids": ids})
        return len(ids)

    async def step() -> int:
        return await asyncio.to_thread(transaction)

    async def close() -> None:
        engine.dispose()

    return step, close


async def sqlalchemy_asyncpg(
    url: str, batch: int
) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=4)
    claim = text(CLAIM.format(now=":now", limit=":limit"))
    complete = text(COMPLETE.format(now=":now", ids=":ids"))

    async def step() -> int:
        async with engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(claim, {"now": time.time(), "limit": batch})]
        if ids:
            async with engine.begin() as conn:
                await conn.execute(complete, {"now": time.time(), "ids": ids})
        return len(ids)

    return step, engine.dispose


async def raw_asyncpg(url: str, batch: int) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]:
    pool = await asyncpg.create_pool(url, min_size=4, max_size=4)
    claim = CLAIM.format(now="$1", limit="$2")
    complete = COMPLETE.format(now="$1", ids="$2")

    async def step() -> int:
        async with pool.acquire() as conn:
            ids = [r[0] for r in await conn.fetch(claim, time.time(), batch)]
            if ids:
                await conn.execute(complete, time.time(), ids)
        return len(ids)

    return step, pool.close


VARIANTS = {"psycopg-thread": psycopg_thread, "sqlalchemy-asyncpg": sqlalchemy_asyncpg, "asyncpg": raw_asyncpg}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": args.rows, "batch": args.batch, "concurrency": args.concurrency}
    with scratch_database(args.admin_url) as url:
        await asyncio.to_thread(database.upgrade, url)
        for variant in args.variants:
            rates = []
            for _ in range(args.repeat):
                await _fill(url, args.rows)
                step, close = await VARIANTS[variant](url, args.batch)
                try:
                    rates.append(await _drain(step, args.rows, args.concurrency))
                finally:
                    await close()
            results[variant] = round(max(rates))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a database where a scratch database may be created")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="claim loops running at once")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best is reported")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    outcome = asyncio.run(main(options))
    if options.json:
        print(json.dumps(outcome))
    else:
        for key, value in outcome.items():
            print(f"{key:>20}: {value}")
