"""Latency of get_webhook_stats and get_webhook_logs for a webhook whose backlog was never tried
(a slow receiver, not a failing one), against a webhook with no backlog in the same database and run.

    .venv/bin/python bench/stats_backlog.py                       # SQLite in a temp dir, 400,000 queued
    .venv/bin/python bench/stats_backlog.py --backlog 100000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres  # scratch DB created there, dropped after

The backlog webhook gets --backlog pending deliveries never tried (due in the past) and 5 waiting
for a retry (due later); the reference webhook gets the 5 retries only. Rows are written by SQL
(a recursive CTE), not by publishing, so filling takes seconds; then ANALYZE on PostgreSQL. Each
query is called --warmup times untimed, then --repeat times: median and max in ms, and the
answer's next_retry_at is checked against the retries written. Target: stats and logs under 20 ms
median with the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from delivery_throughput import scratch_database
from sqlalchemy import Connection, text

from webhook_mcp import Hub
from webhook_mcp.core.settings import Settings

FILL = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
INSERT INTO {table}
SELECT {columns} FROM g
"""
EVENTS = "id, type, body, created_at", "'evt_' || :hook || '_' || n, 'order.created', '{{}}', :now"
DELIVERIES = (
    "webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at",
    "CAST(:hook AS INTEGER), 'evt_' || :hook || '_' || n, 'pending', CASE WHEN n > :count - 5 THEN 1 ELSE 0 END, "
    "CASE WHEN n > :count - 5 THEN :retry_at + n ELSE :now - 3600 + n * 0.001 END, :now, :now",
)


def _fill(conn: Connection, hook: int, count: int, now: float) -> None:
    params = {"hook": hook, "count": count, "now": now, "retry_at": now + 600}
    for columns, values in (EVENTS, DELIVERIES):
        table = f"{'events' if columns is EVENTS[0] else 'deliveries'} ({columns})"
        conn.execute(text(FILL.format(table=table, columns=values)), params)
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE deliveries"))


async def _timed(call: Callable[[], Awaitable[Any]], warmup: int, repeat: int) -> tuple[float, float]:
    for _ in range(warmup):
        await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def run(database_url: str, backlog: int, warmup: int, repeat: int) -> bool:
    settings = Settings(database_url=database_url, allow_plaintext_secrets=True, run_dispatcher=False)
    async with Hub.open(settings, dispatch=False) as hub:
        now = time.time()
        hooks = {}
        for name, count in (("reference", 5), ("backlog", backlog + 5)):
            hook = await hub.service.create_webhook(f"https://{name}.example.com/hook", ["order.created"])
            started = time.perf_counter()
            await hub.store._write(lambda conn, h=hook.id, c=count: _fill(conn, h, c, now))
            print(f"{name}: {count:,} deliveries written in {time.perf_counter() - started:.1f} s")
            hooks[name] = hook.id
        ok = True
        for name, hook_id in hooks.items():
            stats = await hub.service.get_stats(hook_id)
            expected = now + 600 + (backlog + 5 if name == "backlog" else 5) - 4
            right = stats.next_retry_at is not None and abs(stats.next_retry_at.timestamp() - expected) < 1e-3
            ok = ok and right
            s_med, s_max = await _timed(lambda h=hook_id: hub.service.get_stats(h), warmup, repeat)
            l_med, l_max = await _timed(lambda h=hook_id: hub.service.get_logs(h), warmup, repeat)
            verdict = "" if name == "reference" else ("  PASS" if max(s_med, l_med) < 20 else "  MISS")
            print(
                f"{name:9} stats {s_med:6.2f} ms median ({s_max:6.2f} max)  logs {l_med:6.2f} ms ({l_max:6.2f} max)"
                f"  next_retry {'right' if right else 'WRONG'}{verdict}"
            )
        return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=400_000, help="deliveries never tried (default 400000)")
    parser.add_argument("--database-url", default=None, help="postgresql://… server for a scratch database")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with scratch_database(args.database_url) as url:
        ok = asyncio.run(run(url, args.backlog, args.warmup, args.repeat))
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
