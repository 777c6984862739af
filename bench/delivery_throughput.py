"""End-to-end delivery throughput benchmark for webhook-mcp.

One process publishes N events for one webhook (dispatcher stopped), then starts a dispatcher and
measures how fast every delivery is sent to a local receiver and recorded as succeeded. The receiver
runs in a separate process by default so its CPU does not compete with the dispatcher's.

    .venv/bin/python bench/delivery_throughput.py                 # SQLite, 20,000 events
    .venv/bin/python bench/delivery_throughput.py --json
    .venv/bin/python bench/delivery_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Exit status: 0 when the run completes (targets missed or not), 2 on timeout, 1 on other errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import hashlib
import hmac
import ipaddress
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiohttp import web

from webhook_mcp.interfaces.cli import run

# Targets: SQLite end to end, and PostgreSQL with one worker process.
TARGET_DELIVERIES_PER_S = {"sqlite": 3500.0, "postgresql": 5000.0}
TARGET_PUBLISH_SECONDS_FOR_20K = 2.0
TARGET_RSS_MB = 150.0

EVENT_TYPE = "order.created"
PROGRESS_POLL = 0.005
WORKER_PROGRESS_POLL = 0.05


# -- receiver ------------------------------------------------------------------------------------


@dataclass
class ReceiverState:
    verify_every: int = 0
    key: bytes | None = None
    count: int = 0
    bytes_in: int = 0
    verified: int = 0
    bad_signatures: int = 0
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0


def _verify(key: bytes, headers: Any, body: bytes) -> bool:
    """Standard Webhooks check written independently of webhook_mcp.signing."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for part in headers.get("webhook-signature", "").split():
        version, _, signature = part.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


def make_receiver_app(state: ReceiverState) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        record_hook(state, request.path_qs, request.headers, await request.read())
        return web.Response(text="ok")

    async def set_secret(request: web.Request) -> web.Response:
        secret = (await request.text()).strip()
        state.key = base64.b64decode(secret.removeprefix("whsec_"))
        return web.Response(text="ok")

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(receiver_stats(state))

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/_control/secret", set_secret)
    app.router.add_get("/_control/stats", stats)
    return app


def record_hook(state: ReceiverState, target: str, headers: Any, body: bytes) -> None:
    """One delivery; a duplicate is the same message id at the same URL (one event goes to every webhook)."""
    state.count += 1
    state.bytes_in += len(body)
    msg_id = target + " " + headers.get("webhook-id", "")
    if msg_id in state.ids:
        state.duplicates += 1
    else:
        state.ids.add(msg_id)
    if state.verify_every and state.key is not None and state.count % state.verify_every == 0:
        if _verify(state.key, headers, body):
            state.verified += 1
        else:
            state.bad_signatures += 1


def receiver_stats(state: ReceiverState) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "count": state.count,
        "unique": len(state.ids),
        "duplicates": state.duplicates,
        "bytes_in": state.bytes_in,
        "verified": state.verified,
        "bad_signatures": state.bad_signatures,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


class LeanReceiver(asyncio.Protocol):
    """The same endpoints as the aiohttp receiver on a bare keep-alive HTTP/1.1 server (httptools),
    as a production receiver (uvicorn, Go, nginx) costs: the receiver shares this machine's two
    cores with the dispatcher and PostgreSQL, so a heavy one caps what the benchmark can show."""

    def __init__(self, state: ReceiverState) -> None:
        import httptools

        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as exc:
            print(f"receiver: {exc!r} (cause {exc.__cause__!r}); closing the connection", file=sys.stderr)
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, headers, body = self.url, self.headers, b"".join(self.body)
        self.url, self.headers, self.body = b"", {}, []
        answer = b"ok"
        if url == b"/_control/stats":
            answer = json.dumps(receiver_stats(self.state)).encode()
        elif url == b"/_control/secret":
            self.state.key = base64.b64decode(body.decode().strip().removeprefix("whsec_"))
        else:
            record_hook(self.state, url.decode("latin-1"), headers, body)
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        if not self.parser.should_keep_alive():
            self.transport.close()


async def start_receiver(state: ReceiverState, lean: bool = False) -> tuple[Callable[[], Awaitable[None]], int]:
    """Start a receiver on 127.0.0.1; returns its stop function and port."""
    if lean:
        server = await asyncio.get_running_loop().create_server(
            lambda: LeanReceiver(state), "127.0.0.1", 0, backlog=1024
        )

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        return stop, server.sockets[0].getsockname()[1]
    runner = web.AppRunner(make_receiver_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    return runner.cleanup, port


def _receiver_process(conn: Connection, verify_every: int, lean: bool) -> None:
    async def serve() -> None:
        stop, port = await start_receiver(ReceiverState(verify_every=verify_every), lean)
        conn.send(port)
        try:
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # any message: stop
        finally:
            await stop()

    if lean:
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())


@contextlib.asynccontextmanager
async def receiver(in_process: bool, verify_every: int, lean: bool = False) -> AsyncIterator[int]:
    """Yield the receiver's port on 127.0.0.1."""
    if in_process:
        stop, port = await start_receiver(ReceiverState(verify_every=verify_every), lean)
        try:
            yield port
        finally:
            await stop()
        return
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver_process, args=(child, verify_every, lean), daemon=True, name="bench-receiver")
    proc.start()
    try:
        ready = await asyncio.to_thread(parent.poll, 30)
        if not ready:
            raise RuntimeError("the receiver process did not start within 30 s")
        port = parent.recv()
        yield port
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        await asyncio.to_thread(proc.join, 5)
        if proc.is_alive():
            proc.kill()
            await asyncio.to_thread(proc.join, 5)


async def receiver_call(port: int, method: str, path: str, body: str | None = None) -> Any:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", data=body) as response,
    ):
        response.raise_for_status()
        return await response.json() if method == "GET" else await response.text()


# -- database ------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(database_url: str | None) -> Any:
    """Yield a database URL: a fresh SQLite file, or a scratch PostgreSQL database created on the
    server of ``database_url`` and dropped afterwards."""
    if not database_url:
        with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    if database_url.startswith("sqlite"):
        yield database_url
        return
    import psycopg

    admin_url = database_url.replace("postgres://", "postgresql://", 1).replace(
        "postgresql+asyncpg://", "postgresql://"
    )
    base = admin_url.rsplit("/", 1)[0]
    name = f"webhook_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the benchmark -------------------------------------------------------------------------------


def padded_data(example: dict[str, Any], payload_bytes: int) -> dict[str, Any]:
    """The order.created example with a filler field so the whole envelope is ~payload_bytes."""
    from webhook_mcp.service.texts import envelope

    probe = envelope("evt_" + "0" * 32, EVENT_TYPE, time.time(), {**example, "filler": ""})
    pad = max(0, payload_bytes - len(probe.encode()))
    return {**example, "filler": "x" * pad}


def log(message: str) -> None:
    """Phase markers on stderr (a profiler can attach or stop at them)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def postgres_cpu_seconds() -> float:
    """CPU of every local PostgreSQL process, exited backends included (through the postmaster's
    children times): PostgreSQL shares the two cores with the dispatcher and the receiver."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(") ")
        if name.endswith("(postgres"):
            fields = rest.split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def calibration_ms() -> float:
    """Best of five runs of a fixed loop: this machine's speed drifts by tens of percent within an
    hour, so each report says how fast it was at the time."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        sum(range(1_000_000))
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def deliver_with_workers(args: argparse.Namespace, settings: Any, hub: Any) -> dict[str, Any]:
    """Separate `webhook-mcp worker` processes, as a deployment runs them; done when the database
    says every delivery succeeded. The clock and the CPU count start once every worker has said it
    started (Python's start-up is not delivery work); deliveries made before then are not counted."""
    from sqlalchemy import func, select

    from webhook_mcp.storage.schema import deliveries

    env = dict(os.environ)
    env.update(
        WEBHOOK_MCP_DATABASE_URL=settings.database_url,
        WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
        WEBHOOK_MCP_LOG_LEVEL="INFO",
        WEBHOOK_MCP_MAX_CONCURRENCY=str(settings.max_concurrency),
        WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(settings.per_endpoint_concurrency),
        WEBHOOK_MCP_BATCH_SIZE=str(settings.batch_size),
    )
    # Counting what is left reads the small partial index of pending rows; counting what succeeded
    # would scan the table every poll, and that PostgreSQL work would be charged to the workers.
    left = select(func.count()).select_from(deliveries).where(deliveries.c.state == "pending")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "webhook_mcp.interfaces.cli", "worker", env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(args.workers)
    ]
    ready = [asyncio.Event() for _ in procs]

    async def watch(proc: asyncio.subprocess.Process, started: asyncio.Event) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            if b"dispatcher" in line and b"started" in line:
                started.set()
            elif b"WARNING" in line or b"ERROR" in line:
                sys.stderr.write(line.decode(errors="replace"))

    watchers = [asyncio.create_task(watch(p, r)) for p, r in zip(procs, ready, strict=True)]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(r.wait() for r in ready))
        cpu0 = sum(process_cpu_seconds(p.pid) for p in procs)
        t0 = time.perf_counter()
        before = args.events - (await hub.store.scalar(left) or 0)
        while await hub.store.scalar(left):
            if any(p.returncode is not None for p in procs):
                raise RuntimeError("a worker stopped early")
            await asyncio.sleep(WORKER_PROGRESS_POLL)
        seconds = time.perf_counter() - t0
        cpu = sum(process_cpu_seconds(p.pid) for p in procs) - cpu0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()
        for watcher in watchers:
            watcher.cancel()
    counted = args.events - before
    return {
        "workers": args.workers,
        "deliver_seconds": round(seconds, 3),
        "deliveries_per_s": round(counted / seconds, 1),
        "counted_deliveries": counted,
        "first_recorded_after_s": None,
        "second_half_per_s": None,
        "dispatcher_cpu_seconds": round(cpu * args.events / counted, 2),  # scaled to all deliveries
        "dispatcher_cpu_utilisation": round(cpu / seconds, 2),
    }


def analyze(engine: Any) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


async def run_bench(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from webhook_mcp import Hub, Settings
    from webhook_mcp.delivery.dispatcher import Dispatcher
    from webhook_mcp.storage.schema import deliveries, delivery_attempts, events

    overrides: dict[str, Any] = {}
    if args.concurrency is not None:
        overrides["max_concurrency"] = args.concurrency
    if args.per_endpoint is not None:
        overrides["per_endpoint_concurrency"] = args.per_endpoint
    elif args.concurrency is not None:
        overrides["per_endpoint_concurrency"] = min(
            args.concurrency, Settings.model_fields["per_endpoint_concurrency"].default
        )
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    settings = Settings(
        database_url=database_url,
        allowed_private_networks=[ipaddress.ip_network("127.0.0.0/8")],
        log_level="WARNING",
        **overrides,
    )
    result: dict[str, Any] = {
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "events": args.events,
        "webhooks": args.webhooks,
        "payload_bytes": args.payload_bytes,
        "publish_batch": args.publish_batch,
        "max_concurrency": settings.max_concurrency,
        "per_endpoint_concurrency": settings.per_endpoint_concurrency,
        "batch_size": settings.batch_size,
        "receiver": ("in-process " if args.receiver_in_process else "subprocess ") + args.receiver,
        "python": sys.version.split()[0],
    }
    async with (
        receiver(args.receiver_in_process, args.verify_every, args.receiver == "lean") as port,
        Hub.open(settings, dispatch=False) as hub,
    ):
        for n in range(args.webhooks):
            url = f"http://127.0.0.1:{port}/hook" + (f"?webhook={n}" if args.webhooks > 1 else "")
            hook = await hub.service.create_webhook(url, [EVENT_TYPE], "bench")
        if args.verify_every:  # one webhook only (checked in parse_args): the receiver knows one secret
            secret = (await hub.service.get_secret(hook.id)).secret
            await receiver_call(port, "POST", "/_control/secret", secret)

        data = padded_data(hub.catalog.get(EVENT_TYPE).example, args.payload_bytes)
        # -- publish, dispatcher stopped
        log(f"publishing {args.events} events (pid {os.getpid()})")
        published = 0
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        t0 = time.perf_counter()
        while published < args.events:
            # Every event goes to every webhook: --events counts deliveries.
            size = min(args.publish_batch, args.events - published) // args.webhooks
            await hub.service.publish_many([(EVENT_TYPE, data, None)] * size)
            published += size * args.webhooks
        publish_s = time.perf_counter() - t0
        if profiler:
            profiler.disable()
            profiler.dump_stats(f"{args.profile}-publish.pstats")
        result["publish_seconds"] = round(publish_s, 3)
        result["publish_events_per_s"] = round(args.events / publish_s, 1)
        result["rss_after_publish_mb"] = round(rss_mb(), 1)
        body_len = await hub.store.scalar(select(func.length(events.c.body)).limit(1))
        result["body_bytes"] = body_len

        # Fresh statistics, as autovacuum keeps them in a running system: a table that went from
        # empty to 20,000 rows in two seconds would otherwise be planned as if it were still empty.
        await asyncio.to_thread(analyze, hub.store.engine)

        # -- deliver
        log("delivering")
        postgres0 = postgres_cpu_seconds()
        if args.workers:
            result.update(await deliver_with_workers(args, settings, hub))
        else:
            dispatcher = Dispatcher(hub.store, hub.sender, hub.settings)
            profiler = cProfile.Profile() if args.profile else None
            cpu0 = cpu_seconds()
            if profiler:
                profiler.enable()
            t1 = time.perf_counter()
            task = asyncio.create_task(dispatcher.run(), name="bench-dispatcher")
            first_at: float | None = None
            half_at: float | None = None
            try:
                while dispatcher.delivered < args.events:
                    if task.done():
                        task.result()
                        raise RuntimeError("the dispatcher stopped early")
                    await asyncio.sleep(PROGRESS_POLL)
                    if first_at is None and dispatcher.delivered:
                        first_at = time.perf_counter() - t1
                    if half_at is None and dispatcher.delivered >= args.events // 2:
                        half_at = time.perf_counter() - t1
                deliver_s = time.perf_counter() - t1
            finally:
                if profiler:
                    profiler.disable()
                cpu_used = cpu_seconds() - cpu0
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log("delivered")
            if profiler:
                profiler.dump_stats(f"{args.profile}-deliver.pstats")
            result["deliver_seconds"] = round(deliver_s, 3)
            result["deliveries_per_s"] = round(args.events / deliver_s, 1)
            result["first_recorded_after_s"] = round(first_at or 0.0, 3)
            result["second_half_per_s"] = round((args.events - args.events // 2) / (deliver_s - (half_at or 0.0)), 1)
            result["dispatcher_cpu_seconds"] = round(cpu_used, 2)
            result["dispatcher_cpu_utilisation"] = round(cpu_used / deliver_s, 2)

        if result["database"] == "postgresql":
            result["postgres_cpu_seconds"] = round(postgres_cpu_seconds() - postgres0, 2)
        succeeded = await hub.store.scalar(
            select(func.count()).select_from(deliveries).where(deliveries.c.state == "succeeded")
        )
        attempts = await hub.store.scalar(select(func.count()).select_from(delivery_attempts))
        result["db_succeeded"] = int(succeeded or 0)
        result["db_attempts"] = int(attempts or 0)
        recv = await receiver_call(port, "GET", "/_control/stats")
        result["receiver_requests"] = recv["count"]
        result["receiver_duplicates"] = recv["duplicates"]
        result["receiver_cpu_seconds"] = round(recv["cpu_seconds"], 2)
        if args.verify_every:
            result["signatures_verified"] = recv["verified"]
            result["signatures_bad"] = recv["bad_signatures"]
    result["peak_rss_mb"] = round(rss_mb(), 1)
    result["calibration_ms"] = calibration_ms()
    return result


def evaluate(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    events = result["events"]
    publish_target = TARGET_PUBLISH_SECONDS_FOR_20K * events / 20_000
    checks = [
        (
            f"{result['database']} end-to-end >= {TARGET_DELIVERIES_PER_S[result['database']]:,.0f} deliveries/s",
            result["deliveries_per_s"] >= TARGET_DELIVERIES_PER_S[result["database"]],
            f"{result['deliveries_per_s']:,.0f}/s",
        ),
        (
            f"publish {events:,} events < {publish_target:.2f} s",
            result["publish_seconds"] < publish_target,
            f"{result['publish_seconds']:.2f} s",
        ),
        (
            f"peak RSS < {TARGET_RSS_MB:.0f} MB",
            result["peak_rss_mb"] < TARGET_RSS_MB,
            f"{result['peak_rss_mb']:.1f} MB",
        ),
    ]
    return checks


def print_report(result: dict[str, Any], checks: list[tuple[str, bool, str]]) -> None:
    r = result
    print(
        f"webhook-mcp delivery benchmark: {r['database']}, {r['events']:,} deliveries x {r['body_bytes']} B "
        f"to {r['webhooks']} webhook{'s' if r['webhooks'] > 1 else ''}, "
        f"concurrency {r['max_concurrency']}, per-endpoint {r['per_endpoint_concurrency']}, "
        f"batch {r['batch_size']}, receiver {r['receiver']}"
    )
    print(
        f"  publish : {r['publish_seconds']:.3f} s  ({r['publish_events_per_s']:,.0f} events/s, "
        f"batches of {r['publish_batch']})"
    )
    if r.get("workers"):
        print(
            f"  deliver : {r['deliver_seconds']:.3f} s  ({r['deliveries_per_s']:,.0f} deliveries/s end to end, "
            f"{r['workers']} worker processes; {r['counted_deliveries']:,} counted after every worker started)"
        )
        who = f"{r['workers']} workers"
    else:
        print(
            f"  deliver : {r['deliver_seconds']:.3f} s  ({r['deliveries_per_s']:,.0f} deliveries/s end to end; "
            f"first recorded after {r['first_recorded_after_s']:.3f} s, second half {r['second_half_per_s']:,.0f}/s)"
        )
        who = "dispatcher process"
    print(
        f"  cpu     : {who} {r['dispatcher_cpu_seconds']:.2f} s "
        f"({r['dispatcher_cpu_utilisation']:.0%} of one core), receiver {r['receiver_cpu_seconds']:.2f} s total"
    )
    per = 1e6 / r["events"]
    print(
        f"  cpu/dlv : dispatcher {r['dispatcher_cpu_seconds'] * per:.0f} us, "
        f"receiver {r['receiver_cpu_seconds'] * per:.0f} us"
        + (f", postgres {r['postgres_cpu_seconds'] * per:.0f} us" if "postgres_cpu_seconds" in r else "")
        + f" (calibration loop {r['calibration_ms']:.1f} ms)"
    )
    print(
        f"  check   : db succeeded {r['db_succeeded']:,}, attempts {r['db_attempts']:,}, "
        f"receiver requests {r['receiver_requests']:,} (duplicates {r['receiver_duplicates']})"
        + (
            f", signatures ok {r['signatures_verified']} bad {r['signatures_bad']}"
            if "signatures_verified" in r
            else ""
        )
    )
    print(f"  memory  : peak RSS {r['peak_rss_mb']:.1f} MB (after publish {r['rss_after_publish_mb']:.1f} MB)")
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {value}")
    print(
        f"SUMMARY {r['database']} events={r['events']} publish={r['publish_seconds']:.2f}s "
        f"({r['publish_events_per_s']:.0f}/s) deliver={r['deliver_seconds']:.2f}s ({r['deliveries_per_s']:.0f}/s) "
        f"rss={r['peak_rss_mb']:.0f}MB " + " ".join(("PASS" if ok else "MISS") for _, ok, _ in checks)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Publish N events with the dispatcher stopped, then measure end-to-end delivery "
        "throughput to a local receiver (one webhook, order.created).",
    )
    parser.add_argument("--events", type=int, default=20_000, help="events to publish and deliver (default 20000)")
    parser.add_argument(
        "--payload-bytes", type=int, default=1024, help="approximate envelope size per event (default 1024)"
    )
    parser.add_argument(
        "--webhooks",
        type=int,
        default=1,
        help="spread the deliveries over this many webhooks (every event goes to each; default 1)",
    )
    parser.add_argument("--publish-batch", type=int, default=1_000, help="events per publish_many call (default 1000)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="WEBHOOK_MCP_MAX_CONCURRENCY (default: the setting's, 128)"
    )
    parser.add_argument(
        "--per-endpoint",
        type=int,
        default=None,
        help="WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY (default: the setting's, 64, capped at --concurrency)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="WEBHOOK_MCP_BATCH_SIZE (default 200)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: a fresh SQLite file in a temp dir. postgresql://user@host:port/db: a scratch "
        "database is created on that server (connecting to db as admin) and dropped afterwards.",
    )
    parser.add_argument(
        "--receiver",
        choices=("aiohttp", "lean"),
        default="aiohttp",
        help="aiohttp: aiohttp.web on asyncio (default; earlier figures used it); lean: a bare httptools "
        "server on uvloop, about what a production receiver costs",
    )
    parser.add_argument(
        "--receiver-in-process", action="store_true", help="run the receiver on the benchmark's own event loop"
    )
    parser.add_argument(
        "--verify-every", type=int, default=0, help="receiver verifies every Nth signature (default 0: off)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="deliver with this many `webhook-mcp worker` processes instead of an in-process dispatcher "
        "(progress is read from the database; default 0)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="abort after this many seconds (default 120)")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="cProfile each phase: write PREFIX-publish.pstats and PREFIX-deliver.pstats"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    args = parser.parse_args(argv)
    if args.webhooks < 1 or args.events % args.webhooks or args.publish_batch % args.webhooks:
        parser.error("--events and --publish-batch must be multiples of --webhooks")
    if args.verify_every and args.webhooks > 1:
        parser.error("--verify-every needs --webhooks 1 (the receiver checks one webhook's secret)")
    if args.events < 1 or args.publish_batch < 1:
        parser.error("--events and --publish-batch must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    async def bounded() -> dict[str, Any]:
        with scratch_database(args.database_url) as url:
            return await asyncio.wait_for(run_bench(args, url), args.timeout)

    try:
        result = run(bounded())  # the event loop `serve` and `worker` use
    except TimeoutError:
        print(f"ABORTED: the benchmark did not finish within --timeout {args.timeout:g} s", file=sys.stderr)
        return 2
    checks = evaluate(result)
    result["checks"] = {name: {"pass": ok, "value": value} for name, ok, value in checks}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result, checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
