"""One tenant's flood must not starve the others: a quiet tenant's delivery latency, alone and
beside a noisy tenant, with ``tenant_max_in_flight`` set, on SQLite and PostgreSQL in one run.

Each scenario gets a fresh database and one in-process dispatcher (``max_concurrency`` 128,
``per_endpoint_concurrency`` 64). Receivers run in their own processes and answer 200 after
``--latency-ms``. The quiet tenant has one webhook and publishes a trickle of ``--quiet-events``,
one every ``--quiet-interval`` seconds; its latency runs from the call to ``publish``
to the request's arrival at its receiver (both clocks are this machine's).

- alone: the quiet tenant only;
- noisy, capped: first the noisy tenant publishes ``--noisy-events`` events spread over
  ``--noisy-hooks`` webhooks (one delivery each), then the trickle runs while that backlog
  drains, with ``tenant_max_in_flight`` = ``--cap``;
- noisy, no cap (``--no-uncapped`` leaves it out): the same without the cap, for comparison.

Target: the quiet tenant's p50 and p95 beside the capped noisy tenant within 2x of alone.

    .venv/bin/python bench/tenant_fairness.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres   # SQLite and PostgreSQL

Exit status: 0 when the run completes (targets met or not), 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery_throughput import scratch_database

QUIET_TYPE = "customer.created"
NOISY_TYPES = ("order.created", "order.paid", "order.shipped", "order.updated")
TARGET_RATIO = 2.0


def _receiver_process(conn: Connection, latency: float) -> None:
    """Answers 200 after ``latency`` seconds; GET /records: each webhook-id's first arrival."""
    arrivals: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        arrivals.setdefault(request.headers.get("webhook-id", ""), time.time())
        await request.read()
        await asyncio.sleep(latency)
        return web.Response(text="ok")

    async def records(_request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        app.router.add_get("/records", records)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.contextmanager
def receiver(latency: float) -> Iterator[int]:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_receiver_process, args=(child, latency), daemon=True)
    proc.start()
    try:
        yield parent.recv()
    finally:
        proc.terminate()
        proc.join()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def arrivals(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/records") as response:
        return dict(await response.json())


async def _noisy(hub: Any, port: int, events: int, hooks: int) -> Any:
    """The noisy tenant: its webhooks and its whole backlog, published in batches."""
    tenant = await hub.store.create_tenant("noisy", time.time())
    service = hub.service.for_tenant(tenant.id)
    types = NOISY_TYPES[: max(1, min(hooks, len(NOISY_TYPES)))]
    for n, event_type in enumerate(types):
        await service.create_webhook(f"http://127.0.0.1:{port}/noisy/{n}", [event_type])
    items = [(types[n % len(types)], hub.catalog.get(types[n % len(types)]).example, None) for n in range(events)]
    for start in range(0, events, 1000):
        await service.publish_many(items[start : start + 1000])
    return tenant.id


async def _pending(hub: Any, tenant_id: int) -> int:
    from sqlalchemy import func, select

    from webhook_mcp.storage.schema import deliveries, webhooks

    d, w = deliveries.c, webhooks.c
    query = (
        select(func.count())
        .select_from(deliveries.join(webhooks, w.id == d.webhook_id))
        .where(w.tenant_id == tenant_id, d.state == "pending")
    )
    return int(await hub.store.scalar(query))


async def scenario(args: argparse.Namespace, database_url: str, noisy: bool, cap: int | None) -> dict[str, Any]:
    """The quiet tenant's latencies (ms) in one scenario, and the noisy backlog left at the end."""
    from webhook_mcp import Hub, Settings

    settings = Settings(
        database_url=database_url,
        allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")],
        log_level="WARNING",
        tenant_max_in_flight=cap,
        allow_plaintext_secrets=True,  # a scratch database: no key to keep
    )
    latency = args.latency_ms / 1000
    with receiver(latency) as quiet_port, receiver(latency) as noisy_port:
        async with Hub.open(settings) as hub:
            quiet_tenant = await hub.store.create_tenant("quiet", time.time())
            quiet = hub.service.for_tenant(quiet_tenant.id)
            await quiet.create_webhook(f"http://127.0.0.1:{quiet_port}/quiet", [QUIET_TYPE])
            noisy_id = await _noisy(hub, noisy_port, args.noisy_events, args.noisy_hooks) if noisy else None
            data = hub.catalog.get(QUIET_TYPE).example
            published: dict[str, float] = {}
            for _ in range(args.quiet_events):
                t0 = time.time()
                published[(await quiet.publish(QUIET_TYPE, data)).event_id] = t0
                await asyncio.sleep(args.quiet_interval)
            left = await _pending(hub, noisy_id) if noisy_id is not None else 0
            deadline = time.monotonic() + args.timeout
            seen = await arrivals(quiet_port)
            while len(published.keys() & seen.keys()) < len(published) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                seen = await arrivals(quiet_port)
    latencies = sorted((seen[i] - t0) * 1000 for i, t0 in published.items() if i in seen)
    if len(latencies) < len(published):
        raise RuntimeError(f"{len(published) - len(latencies)} quiet deliveries did not arrive in {args.timeout}s")
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 1),
        "noisy_left": left,
    }


async def database(args: argparse.Namespace, server: str | None) -> dict[str, Any]:
    runs = [("alone", False, args.cap), ("noisy, capped", True, args.cap)]
    if not args.no_uncapped:
        runs.append(("noisy, no cap", True, None))
    out: dict[str, Any] = {}
    for name, noisy, cap in runs:
        with scratch_database(server) as url:
            log(f"{'postgresql' if server else 'sqlite'}: {name}")
            out[name] = await scenario(args, url, noisy, cap)
    return out


def report(results: dict[str, dict[str, Any]], cap: int) -> None:
    print(f"quiet tenant's publish -> delivery latency (ms); tenant_max_in_flight={cap}")
    print(f"{'database':<12}{'scenario':<16}{'p50':>9}{'p95':>9}{'noisy left':>12}")
    for db, runs in results.items():
        for name, r in runs.items():
            print(f"{db:<12}{name:<16}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['noisy_left']:>12}")
    for db, runs in results.items():
        alone, capped = runs["alone"], runs["noisy, capped"]
        for q in ("p50_ms", "p95_ms"):
            ratio = capped[q] / max(alone[q], 1e-9)
            verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
            print(f"{verdict}  {db}: {q[:3]} beside the noisy tenant within {TARGET_RATIO:g}x of alone ({ratio:.2f}x)")
        if capped["noisy_left"] == 0:
            print(f"NOTE  {db}: the noisy backlog had drained before the trickle ended; raise --noisy-events")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="postgresql://... server for scratch databases (else SQLite only)")
    parser.add_argument("--noisy-events", type=int, default=20_000, help="the noisy tenant's backlog (20000)")
    parser.add_argument("--noisy-hooks", type=int, default=4, help="its webhooks, 1-4 (4)")
    parser.add_argument("--quiet-events", type=int, default=60, help="the quiet tenant's trickle (60)")
    parser.add_argument("--quiet-interval", type=float, default=0.1, help="seconds between its events (0.1)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="each receiver's answer time (50)")
    parser.add_argument("--cap", type=int, default=64, help="tenant_max_in_flight (64)")
    parser.add_argument("--no-uncapped", action="store_true", help="skip the run without a cap")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the trickle (120)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    async def run() -> dict[str, Any]:
        results = {"sqlite": await database(args, None)}
        if args.database_url:
            results["postgresql"] = await database(args, args.database_url)
        return results

    try:
        results = asyncio.run(run())
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results)) if args.json else report(results, args.cap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
