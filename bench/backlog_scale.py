"""Costs at a large backlog, side by side with an empty database in the same run.

Each database gets one big webhook and one small one. The big one's receiver fails (503) while
the backlog is published and attempted once, then answers 200 and the backlog drains:

1. publish ``--events`` events to the big webhook (rate over the fill, and over its last tenth);
2. a ``webhook-mcp worker`` attempts each of them once against the failing receiver (a million
   attempts in the log, everything still pending);
3. measured at that size, worker stopped: publishing ``--probe-events`` more; a claim while
   another worker holds every slot of the big webhook and the small one has due work (a claim
   that must look past the full endpoint); ``get_webhook_stats`` (all time and 24 h) and
   ``get_webhook_logs``;
4. the receiver answers 200 and a worker drains the backlog (deliveries/s);
5. the workers' peak RSS and the database's bytes per event.

The reference database goes through the same steps with ``--reference-events`` events. With
``--vacuum``, PostgreSQL is vacuumed after step 2 (a server with autovacuum off would otherwise
drain through the dead row versions the failed attempts left).

    .venv/bin/python bench/backlog_scale.py                                # SQLite, 1,000,000 events
    .venv/bin/python bench/backlog_scale.py --events 200000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres        # scratch databases there

Exit status: 0 when the run completes (targets met or not), 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery_throughput import padded_data, scratch_database

EVENT_TYPE = "order.created"
SMALL_BACKLOG = 200
PER_ENDPOINT = 64
SAMPLES = 40
TARGETS = {"publish_ratio": 0.8, "claim_full_ms": 5.0, "read_ms": 20.0, "drain_ratio": 0.9, "rss_mb": 120.0}


# -- a receiver whose answer can be switched ------------------------------------------------------


def _receiver_process(conn: Connection, status: Synchronized[int]) -> None:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(status=status.value, text="ok" if status.value == 200 else "down")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.contextmanager
def receiver() -> Iterator[tuple[int, Synchronized[int]]]:
    status: Synchronized[int] = multiprocessing.Value("i", 503)  # type: ignore[assignment]
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_receiver_process, args=(child, status), daemon=True)
    proc.start()
    try:
        yield parent.recv(), status
    finally:
        proc.terminate()
        proc.join()


# -- measuring -----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def median_ms(call: Callable[[], Awaitable[Any]], samples: int = SAMPLES) -> float:
    await call()  # warm
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_env(database_url: str, seconds_between_retries: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WEBHOOK_MCP_DATABASE_URL=database_url,
        WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
        WEBHOOK_MCP_LOG_LEVEL="INFO",
        WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(PER_ENDPOINT),
        WEBHOOK_MCP_RETRY_SCHEDULE=",".join(["0"] + [str(seconds_between_retries)] * 9),
        WEBHOOK_MCP_RETRY_JITTER="0",
        WEBHOOK_MCP_AUTO_DISABLE_AFTER=str(10 * 86400),
    )
    return env


async def run_worker(env: dict[str, str], done: Callable[[], Awaitable[bool]], poll: float) -> tuple[float, float]:
    """A ``webhook-mcp worker`` until ``done``; (seconds from its start-up, peak RSS in MB)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhook_mcp.interfaces.cli", "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    started = asyncio.Event()

    async def watch() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            if b"dispatcher" in line and b"started" in line:
                started.set()
            elif b"WARNING" in line or b"ERROR" in line:
                sys.stderr.write(line.decode(errors="replace"))

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(60):
            await started.wait()
        t0 = time.perf_counter()
        while not await done():
            if proc.returncode is not None:
                raise RuntimeError("the worker stopped early")
            await asyncio.sleep(poll)
        return time.perf_counter() - t0, peak_rss_mb(proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        watcher.cancel()


async def publish(hub: Any, data: dict[str, Any], count: int, batch: int = 1000) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < count:
        size = min(batch, count - done)
        await hub.service.publish_many([(EVENT_TYPE, data, None)] * size)
        done += size
    return count / (time.perf_counter() - t0)


def disk_bytes(hub: Any, database_url: str) -> int:
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with hub.store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())


async def claim_past_full(hub: Any, big: int) -> float:
    """Median ms of a claim that meets the big webhook at its limit (another worker leased all
    its slots) and must look past its backlog for the small webhook's due work."""
    store = hub.store
    now = time.time()
    held = await store.claim("other-worker", PER_ENDPOINT, now, 3600, PER_ENDPOINT)
    assert all(d.webhook_id == big for d in held) and len(held) == PER_ENDPOINT, "the big webhook is not full"

    async def one() -> None:
        claimed = await store.claim("bench-worker", 100, time.time(), 60, PER_ENDPOINT, look_past_full=True)
        assert claimed and all(d.webhook_id != big for d in claimed), "the claim did not reach the small webhook"
        await store.release([d.id for d in claimed], time.time())

    ms = await median_ms(one)
    await store.release([d.id for d in held], time.time())
    return ms


async def measure(args: argparse.Namespace, database_url: str, events: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from webhook_mcp import Hub, Settings
    from webhook_mcp.storage.schema import attempt_rollups, deliveries, delivery_attempts, delivery_counts

    settings = Settings(
        database_url=database_url, allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")], log_level="WARNING"
    )
    out: dict[str, Any] = {"events": events}
    with receiver() as (port, status):
        async with Hub.open(settings, dispatch=False) as hub:
            service = hub.service
            big = (await service.create_webhook(f"http://127.0.0.1:{port}/big", [EVENT_TYPE], "big")).id
            data = padded_data(hub.catalog.get(EVENT_TYPE).example, args.payload_bytes)
            log(f"{events}: publishing")
            t0 = time.perf_counter()
            tenth = max(1, events // 10)
            await publish(hub, data, events - tenth)
            out["publish_last_tenth_per_s"] = round(await publish(hub, data, tenth), 1)
            out["publish_fill_per_s"] = round(events / (time.perf_counter() - t0), 1)

            attempts = select(func.count()).select_from(delivery_attempts)
            pending = select(func.count()).select_from(deliveries).where(deliveries.c.state == "pending")
            # While a worker runs, poll the counters the store keeps exact in every transaction
            # (what get_webhook_stats reads), not a count over the backlog, which would take a
            # good share of the machine from the worker being timed at a million rows.
            attempted_now = select(func.coalesce(func.sum(attempt_rollups.c.attempts), 0))
            pending_now = select(func.coalesce(func.sum(delivery_counts.c.n), 0)).where(
                delivery_counts.c.state == "pending"
            )
            log(f"{events}: one failed attempt each")
            poll = 0.05 if events <= 100_000 else 0.5

            async def all_attempted() -> bool:
                return int(await hub.store.scalar(attempted_now)) >= events

            # Retried a second after each failure: due again by the time the receiver answers.
            _s, rss_fail = await run_worker(worker_env(database_url, 1), all_attempted, poll)
            # The stopped worker's leases end now (not a minute later), so both phases start clean.
            d = deliveries.c
            expire = deliveries.update().where(d.lease_owner.is_not(None)).values(lease_owner=None)
            await hub.store._write(lambda conn: conn.execute(expire.values(next_attempt_at=time.time())))
            await asyncio.to_thread(_analyze, hub.store.engine, args.vacuum)
            out["attempts_in_log"] = int(await hub.store.scalar(attempts))

            log(f"{events}: measuring at size")
            out["publish_at_size_per_s"] = round(await publish(hub, data, args.probe_events), 1)
            small = (await service.create_webhook(f"http://127.0.0.1:{port}/small", ["order.paid"], "small")).id
            paid = hub.catalog.get("order.paid").example
            await service.publish_many([("order.paid", paid, None)] * SMALL_BACKLOG)
            out["pending"] = int(await hub.store.scalar(pending))
            out["claim_past_full_ms"] = await claim_past_full(hub, big)
            out["stats_ms"] = await median_ms(lambda: service.get_stats(big))
            out["stats_24h_ms"] = await median_ms(lambda: service.get_stats(big, 24))
            out["logs_ms"] = await median_ms(lambda: service.get_logs(big, 20))
            out["bytes_per_event"] = round(disk_bytes(hub, database_url) / (events + args.probe_events))
            await service.delete_webhook(small)

            log(f"{events}: draining")
            status.value = 200
            total = int(await hub.store.scalar(pending))

            async def drained() -> bool:
                return int(await hub.store.scalar(pending_now)) == 0

            seconds, rss_drain = await run_worker(worker_env(database_url, 3600), drained, poll)
            out["drain_per_s"] = round(total / seconds, 1)
            out["worker_peak_rss_mb"] = round(max(rss_fail, rss_drain), 1)
    return out


def _analyze(engine: Any, vacuum: bool) -> None:
    """Fresh statistics after the fill; ``vacuum``: on PostgreSQL also what autovacuum would have
    done by then (the test server runs with it off), so dead row versions do not slow the drain."""
    if vacuum and engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


async def side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"database": "postgresql" if args.database_url else "sqlite"}
    for name, events in (("empty", args.reference_events), ("full", args.events)):
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(scratch_database(args.database_url))
            results[name] = await measure(args, url, events)
    return results


def checks(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    empty, full = results["empty"], results["full"]
    publish_ratio = full["publish_at_size_per_s"] / empty["publish_at_size_per_s"]
    drain_ratio = full["drain_per_s"] / empty["drain_per_s"]
    return [
        ("publish at size >= 0.8x empty", publish_ratio >= TARGETS["publish_ratio"], f"{publish_ratio:.2f}x"),
        ("claim past a full endpoint <= 5 ms", full["claim_past_full_ms"] <= TARGETS["claim_full_ms"], "median"),
        ("stats <= 20 ms", max(full["stats_ms"], full["stats_24h_ms"]) <= TARGETS["read_ms"], "median"),
        ("logs <= 20 ms", full["logs_ms"] <= TARGETS["read_ms"], "median"),
        ("drain >= 0.9x small backlog", drain_ratio >= TARGETS["drain_ratio"], f"{drain_ratio:.2f}x"),
        ("worker peak RSS < 120 MB", full["worker_peak_rss_mb"] < TARGETS["rss_mb"], "MB"),
    ]


def report(results: dict[str, Any]) -> None:
    empty, full = results["empty"], results["full"]
    print(f"{'':28}{'empty':>14}{'at size':>14}   ({results['database']})")
    for key in full:
        print(f"{key:28}{empty.get(key, ''):>14}{full[key]:>14}")
    for name, ok, detail in checks(results):
        print(f"{'PASS' if ok else 'MISS'}  {name}  ({detail})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog size (default 1000000)")
    parser.add_argument("--reference-events", type=int, default=20_000, help="the empty run's size (default 20000)")
    parser.add_argument("--probe-events", type=int, default=20_000, help="published at size to time it (20000)")
    parser.add_argument("--payload-bytes", type=int, default=500, help="approximate event size (default 500)")
    parser.add_argument("--database-url", default=None, help="postgresql://… server for scratch databases")
    parser.add_argument(
        "--vacuum", action="store_true", help="VACUUM ANALYZE after the fill on PostgreSQL (without autovacuum)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    for name in ("events", "reference_events", "probe_events"):
        if getattr(args, name) < 1000:
            parser.error(f"--{name.replace('_', '-')} must be at least 1000, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = asyncio.run(side_by_side(args))
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results | {"checks": [list(c) for c in checks(results)]}))
    else:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
