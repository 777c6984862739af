"""What a worker killed mid-backlog costs: silence per webhook, rate before and after, lost, duplicates.

Several ``webhook-mcp worker`` processes (default settings: a 60 s lease) deliver ``--events``
events to each of ``--webhooks`` webhooks on a receiver answering after ``--latency-ms``. When a
third of the deliveries have arrived, the worker holding the most leases is paused for a moment
(so its unfinished leases can be counted: the duplicate bound), killed with SIGKILL, and a
replacement is started. Reports, per webhook, the longest silence from the kill on, and overall:
deliveries/s before and after the kill, lost deliveries, duplicates.

    .venv/bin/python bench/worker_takeover.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/worker_takeover.py --workers 2          # SQLite, two worker processes

Exit status: 0 when the run completes (targets met or not), 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery_throughput import scratch_database

EVENT_TYPE = "order.created"
STARTED = re.compile(rb"dispatcher (\S+) started")
TARGET_SILENCE_S = 3.0
TARGET_RATE_RATIO = 0.6


class Arrivals:
    """Every request the receiver gets: (time, webhook, event id)."""

    def __init__(self, latency: float, third: int) -> None:
        self.latency = latency
        self.seen: list[tuple[float, int, str]] = []
        self.third = third
        self.a_third_arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append((time.time(), int(request.match_info["n"]), request.headers.get("webhook-id", "")))
        if len(self.seen) >= self.third:
            self.a_third_arrived.set()
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.Response(text="ok")


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.id: str | None = None
        self.started = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            found = STARTED.search(line)
            if found:
                self.id = found.group(1).decode()
                self.started.set()
            elif b"ERROR" in line or b"Traceback" in line:
                sys.stderr.write(line.decode(errors="replace"))


async def start_worker(database_url: str) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_MCP_")}
    env.update(
        WEBHOOK_MCP_DATABASE_URL=database_url,
        WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
        WEBHOOK_MCP_LOG_LEVEL="INFO",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhook_mcp.interfaces.cli", "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    worker = WorkerProcess(proc)
    async with asyncio.timeout(60):
        await worker.started.wait()
    return worker


async def leases_by_owner(hub: Any) -> Counter[str]:
    from sqlalchemy import func, select

    from webhook_mcp.storage.schema import deliveries

    d = deliveries.c
    rows = await hub.store.fetch_all(
        select(d.lease_owner, func.count())
        .where(d.state == "pending", d.lease_owner.is_not(None))
        .group_by(d.lease_owner)
    )
    return Counter({owner: int(n) for owner, n in rows})


async def kill_busiest(hub: Any, running: list[WorkerProcess]) -> tuple[WorkerProcess, int, float]:
    """Pause the worker holding the most leases, count them, kill it: (worker, leases, when)."""
    held = await leases_by_owner(hub)
    doomed = max(running, key=lambda w: held.get(w.id or "", 0))
    doomed.proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(0.2)  # its last statements land (or die with it)
    unfinished = (await leases_by_owner(hub)).get(doomed.id or "", 0)
    doomed.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await doomed.proc.wait()
    return doomed, unfinished, killed_at


def silences(seen: list[tuple[float, int, str]], hooks: int, killed_at: float, done_at: float) -> list[float]:
    """Per webhook, the longest time without a delivery between the kill and its last one."""
    longest = []
    for n in range(hooks):
        times = [killed_at, *sorted(t for t, hook, _ in seen if hook == n and t >= killed_at)]
        last = times[-1] if len(times) > 1 else done_at
        longest.append(max((b - a for a, b in itertools.pairwise(times)), default=last - killed_at))
    return longest


async def run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    import ipaddress

    from sqlalchemy import func, select

    from webhook_mcp import Hub, Settings
    from webhook_mcp.storage.schema import deliveries

    total = args.events * args.webhooks
    arrivals = Arrivals(args.latency_ms / 1000, total // 3)
    app = web.Application()
    app.router.add_post("/hook/{n}", arrivals.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = Settings(database_url=database_url, allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")])
    running: list[WorkerProcess] = []
    try:
        async with Hub.open(settings, dispatch=False) as hub:
            for n in range(args.webhooks):
                await hub.service.create_webhook(f"http://127.0.0.1:{port}/hook/{n}", [EVENT_TYPE])
            example = hub.catalog.get(EVENT_TYPE).example
            for start in range(0, args.events, 500):
                await hub.service.publish_many([(EVENT_TYPE, example, None)] * min(500, args.events - start))
            running = [await start_worker(database_url) for _ in range(args.workers)]
            began = time.time()
            await arrivals.a_third_arrived.wait()
            doomed, unfinished, killed_at = await kill_busiest(hub, running)
            running.remove(doomed)
            running.append(await start_worker(database_url))
            succeeded = select(func.count()).select_from(deliveries).where(deliveries.c.state == "succeeded")
            async with asyncio.timeout(args.timeout):
                while True:
                    if await hub.store.scalar(succeeded) >= total:
                        break
                    await asyncio.sleep(0.1)
            done_at = time.time()
    finally:
        for worker in running:
            if worker.proc.returncode is None:
                worker.proc.terminate()
                await worker.proc.wait()
        await runner.cleanup()
    return report(arrivals.seen, args, began, killed_at, done_at, unfinished)


def report(
    seen: list[tuple[float, int, str]],
    args: argparse.Namespace,
    began: float,
    killed_at: float,
    done_at: float,
    unfinished: int,
) -> dict[str, Any]:
    per_hook: dict[int, Counter[str]] = defaultdict(Counter)
    for _t, hook, event in seen:
        per_hook[hook][event] += 1
    before = sum(1 for t, _h, _e in seen if t < killed_at)
    first, last = min(t for t, _h, _e in seen), max(t for t, _h, _e in seen)
    lost = sum(max(0, args.events - len(per_hook[n])) for n in range(args.webhooks))
    return {
        "workers": args.workers,
        "deliveries": args.events * args.webhooks,
        "silence_after_kill_s": [round(s, 2) for s in silences(seen, args.webhooks, killed_at, done_at)],
        "rate_before_per_s": round(before / (killed_at - first), 1),
        "rate_after_per_s": round((len(seen) - before) / (last - killed_at), 1),
        "lost": lost,
        "duplicates": sum(n - 1 for counts in per_hook.values() for n in counts.values() if n > 1),
        "dead_worker_unfinished_leases": unfinished,
        "seconds": round(done_at - began, 1),
    }


def checks(result: dict[str, Any]) -> list[tuple[str, bool]]:
    ratio = result["rate_after_per_s"] / result["rate_before_per_s"]
    return [
        (f"no webhook silent > {TARGET_SILENCE_S:g} s", max(result["silence_after_kill_s"]) <= TARGET_SILENCE_S),
        (f"rate after >= {TARGET_RATE_RATIO}x before ({ratio:.2f}x)", ratio >= TARGET_RATE_RATIO),
        ("nothing lost", result["lost"] == 0),
        (
            "duplicates <= dead worker's unfinished leases",
            result["duplicates"] <= result["dead_worker_unfinished_leases"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--webhooks", type=int, default=3, help="webhooks, each gets every event (default 3)")
    parser.add_argument("--events", type=int, default=10_000, help="events published (default 10000)")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="receiver answer delay (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (300)")
    parser.add_argument("--database-url", default=None, help="postgresql://… server for a scratch database")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.workers < 2 or args.webhooks < 1 or args.events < 100:
        parser.error("need --workers >= 2, --webhooks >= 1 and --events >= 100")
    try:
        with scratch_database(args.database_url) as url:
            result = asyncio.run(run(args, url))
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result | {"checks": checks(result)}))
        return 0
    for key, value in result.items():
        print(f"{key:32}{value}")
    for name, ok in checks(result):
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
