"""Does retention keep the database from growing? Many publish-deliver-prune cycles, side by side
with the reference (the same cycles with retention off), measuring the database's size after each.

Each cycle publishes ``--events`` events to one webhook, lets the real dispatcher deliver them to a
receiver in this process, then runs one retention pass with the clock moved past every retention
period (so everything finished is due to go). The two configurations alternate cycle by cycle, each
on its own scratch database. SQLite: the file after a checkpoint, and the pages on its free list
(freed pages the next writes reuse); PostgreSQL: the three big tables with their indexes and TOAST
(``pg_total_relation_size``), with autovacuum as configured.

    .venv/bin/python bench/retention_size.py                                  # SQLite
    .venv/bin/python bench/retention_size.py --database-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from delivery_throughput import scratch_database
from sqlalchemy import func, select, text

from webhook_mcp import Hub, Settings
from webhook_mcp.delivery.retention import DAY, Retention
from webhook_mcp.storage.engine import sync_url
from webhook_mcp.storage.schema import deliveries

TABLES = ("events", "deliveries", "delivery_attempts")


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


def size(hub: Hub) -> dict[str, float]:
    """Megabytes: the files (SQLite) or the tables (PostgreSQL)."""
    mb = 1024 * 1024
    if hub.store.is_postgres:
        with hub.store.engine.connect() as conn:
            total = sum(conn.scalar(text(f"SELECT pg_total_relation_size('{t}')")) for t in TABLES)
        return {"tables": total / mb}
    raw = hub.store.engine.raw_connection()  # outside any transaction, as a checkpoint needs
    try:
        # Move what the WAL holds into the file first, so the file's size is the database's.
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        page = raw.driver_connection.execute("PRAGMA page_size").fetchone()[0]  # type: ignore[union-attr]
        free = raw.driver_connection.execute("PRAGMA freelist_count").fetchone()[0] * page  # type: ignore[union-attr]
    finally:
        raw.close()
    path = Path(str(sync_url(str(hub.settings.database_url)).database))
    return {"file": path.stat().st_size / mb, "free pages": free / mb}


async def cycle(hub: Hub, retention: Retention | None, events: int) -> None:
    example = hub.catalog.get("order.created").example
    for start in range(0, events, 500):
        await hub.service.publish_many([("order.created", example, None)] * min(500, events - start))
    pending = select(func.count()).select_from(deliveries).where(deliveries.c.state == "pending")
    for _ in range(6000):  # delivered within 5 minutes, or something is wrong
        if not await hub.store.scalar(pending):
            break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("deliveries did not finish within 5 minutes")
    if retention is not None:
        await retention.prune()


async def run(database_urls: list[str], cycles: int, events: int) -> None:
    later = time.time() + 400 * DAY  # past every retention period
    async with receiver() as url, contextlib.AsyncExitStack() as stack:
        hubs: list[tuple[str, Hub, Retention | None]] = []
        for name, database_url in zip(("retention", "reference"), database_urls, strict=True):
            settings = Settings(
                database_url=database_url,
                allowed_private_networks="127.0.0.0/8",  # type: ignore[arg-type]
                delivery_retention_days=30 if name == "retention" else 0,
                log_retention_days=30 if name == "retention" else 3650,
            )
            hub = await stack.enter_async_context(Hub.open(settings))
            await hub.service.create_webhook(url, ["order.created"])
            retention = Retention(hub.store, settings, clock=lambda: later) if name == "retention" else None
            hubs.append((name, hub, retention))
        print(f"{'cycle':>5}  " + "  ".join(f"{name:>40}" for name, _hub, _r in hubs))
        for n in range(1, cycles + 1):
            row: list[str] = []
            for _name, hub, retention in hubs:
                await cycle(hub, retention, events)
                row.append(", ".join(f"{key} {value:7.2f} MB" for key, value in size(hub).items()))
            print(f"{n:>5}  " + "  ".join(f"{cell:>40}" for cell in row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="postgresql://… server for scratch databases")
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--events", type=int, default=2000, help="events published per cycle")
    args = parser.parse_args()
    with scratch_database(args.database_url) as first, scratch_database(args.database_url) as second:
        urls: list[Any] = [first, second]
        if first == second:  # one SQLite file given: keep the reference beside it
            urls[1] = first.replace(".db", "-reference.db")
        asyncio.run(run(urls, args.cycles, args.events))


if __name__ == "__main__":
    main()
