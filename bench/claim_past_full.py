"""A claim that must look past a full endpoint, timed directly on PostgreSQL.

Fills a scratch database with ``--events`` due deliveries for one webhook (``generate_series``,
~500 B bodies) and 200 for a second; another worker leases the first webhook's 64 slots; then
``--samples`` claims (limit 100, 64 per endpoint), each handing back what it leased. Prints the
median and fastest claim in ms. Run it with ``PYTHONPATH=<other checkout>/src`` to time other code
on the same machine, interleaved.

    .venv/bin/python bench/claim_past_full.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Exit status: 0 when the run completes, 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery_throughput import scratch_database

FILL = (
    "INSERT INTO events (id, type, body, created_at) SELECT '{p}' || lpad(g::text, 32, '0'), '{t}', "
    "repeat('x', {size}), :t FROM generate_series(1, :n) AS g; "
    "INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at) "
    "SELECT :w, '{p}' || lpad(g::text, 32, '0'), 'pending', 0, :t + g * 0.001, :t, :t FROM generate_series(1, :n) AS g"
)


async def run(args: argparse.Namespace, url: str) -> tuple[float, float]:
    from sqlalchemy import text

    from webhook_mcp import Hub, Settings

    settings = Settings(
        database_url=url,
        allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")],
        log_level="WARNING",
        allow_plaintext_secrets=True,
    )
    async with Hub.open(settings, dispatch=False) as hub:
        big = (await hub.service.create_webhook("http://127.0.0.1:9/big", ["order.created"])).id
        small = (await hub.service.create_webhook("http://127.0.0.1:9/small", ["order.paid"])).id
        now = time.time()

        def fill(conn: Any) -> None:
            for prefix, kind, size, hook, count, due in (
                ("evb_", "order.created", 500, big, args.events, now - 3600),
                ("evs_", "order.paid", 2, small, 200, now - 60),
            ):
                for statement in FILL.format(p=prefix, t=kind, size=size).split("; "):
                    conn.execute(text(statement), {"n": count, "t": due, "w": hook})
            conn.exec_driver_sql("ANALYZE")

        await hub.store._write(fill)
        await hub.store.claim("other-worker", 64, time.time(), 36000, 64)
        times = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            claimed = await hub.store.claim("bench-worker", 100, time.time(), 60, 64, look_past_full=True)
            times.append((time.perf_counter() - t0) * 1000)
            assert claimed and all(d.webhook_id == small for d in claimed), "the claim did not reach the small webhook"
            await hub.store.release([d.id for d in claimed], time.time())
    return statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="postgresql://... server for a scratch database")
    parser.add_argument("--events", type=int, default=200_000, help="the full webhook's backlog (200000)")
    parser.add_argument("--samples", type=int, default=200, help="claims timed (200)")
    args = parser.parse_args(argv)
    try:
        with scratch_database(args.database_url) as url:
            median, fastest = asyncio.run(run(args, url))
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"claim past a full endpoint at {args.events:,} queued: median {median:.2f} ms, fastest {fastest:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
