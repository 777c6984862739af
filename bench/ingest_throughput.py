"""HTTP ingest throughput: ``POST /v1/events`` of a real ``webhook-mcp serve`` beside a bare
uvicorn+starlette endpoint that only parses the same JSON and answers 202, in one run, with the
same client (wrk: 32 connections, ~1 KB events), rounds interleaved so the machine's drift hits
both alike. One webhook is subscribed and deliveries go out while the server ingests (SQLite: the
server's own dispatcher; PostgreSQL: ``serve --no-dispatcher`` and one ``worker`` process).

    flock /tmp/bench.lock .venv/bin/python bench/ingest_throughput.py
    flock /tmp/bench.lock .venv/bin/python bench/ingest_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Measures: single-event POSTs (project vs bare), batches of 100 (events/s), and publish -> first
delivery latency when idle (sequential single publishes to a second webhook). ``--baseline DIR``
also runs another version of the package (e.g. the code before a change) on its own scratch
database, for latency and single POSTs in the same rounds; its idle latency is then the bar the
project's must not exceed (without it, a constant is):

    mkdir -p /tmp/base && git archive <commit> src/webhook_mcp migrations | tar -x -C /tmp/base \
        && mv /tmp/base/migrations /tmp/base/src/webhook_mcp/_migrations
    ... bench/ingest_throughput.py --baseline /tmp/base/src

Needs ``wrk`` (``apt-get install wrk``). Exit status 0 when the run completes, targets met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery_throughput import padded_data, receiver, receiver_call, scratch_database

TOKEN = "bench-token"
TARGET_SINGLE_RATIO = {"sqlite": 0.5, "postgresql": 0.4}
TARGET_BATCH_EVENTS_PER_S = {"sqlite": 20_000.0, "postgresql": 15_000.0}
# Only when no --baseline runs beside the project: then the baseline's p50, measured in the same
# rounds, is the bar (a constant measured on another day says little on a shared machine).
LATENCY_P50_BEFORE_MS = {"sqlite": 5.0, "postgresql": 8.0}
LATENCY_TOLERANCE = 1.1  # "not worse": within the rounds' noise of the baseline's p50
CONNECTIONS = 32


# -- the bare reference endpoint ------------------------------------------------------------------


def bare_server(port: int) -> None:
    """uvicorn (uvloop, httptools, as ``serve`` runs) + starlette: parse the JSON, answer 202."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def events(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"accepted": True}, status_code=202)

    app = Starlette(routes=[Route("/v1/events", events, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


@contextlib.contextmanager
def processes(commands: list[list[str]], env: dict[str, str], port: int | None) -> Iterator[None]:
    started = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for command in commands]
    try:
        if port is not None:
            wait_listening(port, started[0])
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def server_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": database_url,
        "WEBHOOK_MCP_API_TOKEN": TOKEN,
        "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
        # Scratch databases: signing secrets need no encryption at rest here.
        "WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS": "1",
    }


# -- the client -----------------------------------------------------------------------------------


def wrk(port: int, body: bytes, seconds: float, workdir: Path) -> dict[str, float]:
    """Requests/s and how many got a non-2xx answer, from wrk with ``CONNECTIONS`` connections."""
    body_path = workdir / "body.json"
    body_path.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{body_path}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
    )
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script)]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/v1/events"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {"rate": rate, "requests": total, "non_2xx": int(bad.group(1)) if bad else 0}


async def drained(port: int, expected: int, timeout: float = 180.0) -> float:
    """Wait until the receiver has ``expected`` deliveries; the seconds it took."""
    started = time.monotonic()
    while (await receiver_call(port, "GET", "/_control/stats"))["count"] < expected:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"deliveries did not reach {expected} within {timeout:g} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


# -- latency --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def timing_receiver() -> AsyncIterator[tuple[str, dict[str, float], asyncio.Event]]:
    arrived: dict[str, float] = {}
    signal = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        arrived[json.loads(await request.read())["id"]] = time.perf_counter()
        signal.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/latency", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/latency", arrived, signal
    finally:
        await runner.cleanup()


async def latencies(
    port: int, arrived: dict[str, float], signal: asyncio.Event, count: int, data: dict[str, Any]
) -> tuple[list[float], list[float]]:
    """Publish one order.paid at a time (the server otherwise idle); ms until the 202, and until
    it is delivered."""
    result, answered = [], []
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {TOKEN}"}) as http:
        for _ in range(count):
            signal.clear()
            started = time.perf_counter()
            async with http.post(
                f"http://127.0.0.1:{port}/v1/events", json={"type": "order.paid", "data": data}
            ) as response:
                event_id = (await response.json())["event_id"]
            answered.append((time.perf_counter() - started) * 1000)
            async with asyncio.timeout(10):
                while event_id not in arrived:
                    await signal.wait()
                    signal.clear()
            result.append((arrived[event_id] - started) * 1000)
            await asyncio.sleep(0.02)  # idle between publishes, as the measure says
    return answered, result


# -- the run --------------------------------------------------------------------------------------


PREPARE = """
import asyncio, sys
from webhook_mcp import Hub, Settings

async def prepare(database_url, hook_url, latency_url):
    settings = Settings(database_url=database_url, allowed_private_networks="127.0.0.0/8")
    async with Hub.open(settings, dispatch=False) as hub:
        await hub.service.create_webhook(hook_url, ["order.created"])
        await hub.service.create_webhook(latency_url, ["order.paid"])

asyncio.run(prepare(*sys.argv[1:4]))
"""


def prepare(database_url: str, hook_url: str, latency_url: str, source: str | None = None) -> None:
    """Create the two webhooks with the package version that will serve the database."""
    env = server_env(database_url) | ({"PYTHONPATH": source} if source else {})
    command = [sys.executable, "-c", PREPARE, database_url, hook_url, latency_url]
    subprocess.run(command, env=env, check=True, timeout=120, stdout=subprocess.DEVNULL)


def bodies(events_per_batch: int, payload_bytes: int) -> tuple[bytes, bytes]:
    from webhook_mcp.core.catalog import load_catalog

    data = padded_data(load_catalog().get("order.created").example, payload_bytes)
    single = {"type": "order.created", "data": data}
    return json.dumps(single).encode(), json.dumps({"events": [single] * events_per_batch}).encode()


def latency_summary(answered: list[float], delivered: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(delivered), 2),
        "p90": round(statistics.quantiles(delivered, n=10)[-1], 2),
        "answer_p50": round(statistics.median(answered), 2),
    }


def server_commands(kind: str, port: int) -> list[list[str]]:
    cli = [sys.executable, "-m", "webhook_mcp.interfaces.cli"]
    serve = [*cli, "serve", "--transport", "streamable-http", "--port", str(port)]
    return [serve] if kind == "sqlite" else [[*serve, "--no-dispatcher"], [*cli, "worker"]]


async def single_rounds(
    args: argparse.Namespace, ports: dict[str, int], hook_ports: dict[str, int], body: bytes, workdir: Path
) -> dict[str, list[float]]:
    """Interleaved wrk runs of single-event POSTs; each project's deliveries drain before the next run."""
    rounds: dict[str, list[float]] = {name: [] for name in ports}
    delivered = dict.fromkeys(hook_ports, 0)
    for _ in range(args.rounds):
        for name, port in ports.items():
            outcome = await asyncio.to_thread(wrk, port, body, args.seconds, workdir)
            if outcome["non_2xx"]:
                raise RuntimeError(f"{name}: {outcome['non_2xx']} answers were not 2xx")
            rounds[name].append(outcome["rate"])
            if name in hook_ports:
                delivered[name] += int(outcome["requests"])
                await drained(hook_ports[name], delivered[name])
    return rounds


async def batch_rounds(args: argparse.Namespace, port: int, hook_port: int, body: bytes, workdir: Path) -> list[float]:
    rates = []
    delivered = (await receiver_call(hook_port, "GET", "/_control/stats"))["count"]
    for _ in range(args.rounds):
        outcome = await asyncio.to_thread(wrk, port, body, args.seconds, workdir)
        if outcome["non_2xx"]:
            raise RuntimeError(f"batches: {outcome['non_2xx']} answers were not 2xx")
        rates.append(outcome["rate"] * args.batch)
        delivered += int(outcome["requests"]) * args.batch
        await drained(hook_port, delivered, timeout=600)
    return rates


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from webhook_mcp.core.catalog import load_catalog

    kind = "postgresql" if (args.database_url or "").startswith("postgres") else "sqlite"
    single, batch = bodies(args.batch, args.payload_bytes)
    paid = load_catalog().get("order.paid").example
    results: dict[str, Any] = {"database": kind, "connections": CONNECTIONS, "single_body_bytes": len(single)}
    sources = {"project": None} | ({"baseline": args.baseline} if args.baseline else {})
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as astack:
            ports: dict[str, int] = {}
            hook_ports: dict[str, int] = {}
            timings: dict[str, Any] = {}
            for name, source in sources.items():
                database_url = stack.enter_context(scratch_database(args.database_url))
                hook_ports[name] = await astack.enter_async_context(receiver(False, 0, lean=True))
                timings[name] = await astack.enter_async_context(timing_receiver())
                hook_url = f"http://127.0.0.1:{hook_ports[name]}/hook"
                await asyncio.to_thread(prepare, database_url, hook_url, timings[name][0], source)
                env = server_env(database_url) | ({"PYTHONPATH": source} if source else {})
                ports[name] = free_port()
                stack.enter_context(processes(server_commands(kind, ports[name]), env, ports[name]))
            ports["bare"] = free_port()
            bare = [sys.executable, __file__, "--bare-server", str(ports["bare"])]
            stack.enter_context(processes([bare], server_env(""), ports["bare"]))
            samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sources}
            for _ in range(args.latency_samples // 10):  # interleaved, ten publishes at a time
                for name in sources:
                    _url, arrived, signal = timings[name]
                    answered, lat = await latencies(ports[name], arrived, signal, 10, paid)
                    samples[name][0].extend(answered)
                    samples[name][1].extend(lat)
            for name, (answered, lat) in samples.items():
                results[f"latency_ms_{name}"] = latency_summary(answered, lat)
            if args.only_latency:
                return results
            rounds = await single_rounds(args, ports, hook_ports, single, Path(tmp))
            batch_rates = await batch_rounds(args, ports["project"], hook_ports["project"], batch, Path(tmp))
    medians = {name: statistics.median(rates) for name, rates in rounds.items()}
    results |= {
        "single_per_s": {name: round(rate) for name, rate in medians.items()},
        "single_rounds": rounds,
        "single_ratio": round(medians["project"] / medians["bare"], 3),
        "batch_events_per_s": round(statistics.median(batch_rates)),
        "batch_rounds": [round(rate) for rate in batch_rates],
    }
    if "baseline" in medians:
        results["baseline_single_ratio"] = round(medians["baseline"] / medians["bare"], 3)
    p50 = results["latency_ms_project"]["p50"]
    if "latency_ms_baseline" in results:
        latency_bar = round(results["latency_ms_baseline"]["p50"] * LATENCY_TOLERANCE, 2)
        results["latency_bar"] = f"baseline p50 x {LATENCY_TOLERANCE} (measured in this run)"
    else:
        latency_bar = LATENCY_P50_BEFORE_MS[kind]
        results["latency_bar"] = "a constant: pass --baseline to measure the code before beside it"
    results["targets"] = {
        "single_ratio": [TARGET_SINGLE_RATIO[kind], results["single_ratio"] >= TARGET_SINGLE_RATIO[kind]],
        "batch_events_per_s": [
            TARGET_BATCH_EVENTS_PER_S[kind],
            results["batch_events_per_s"] >= TARGET_BATCH_EVENTS_PER_S[kind],
        ],
        "latency_p50_ms": [latency_bar, p50 <= latency_bar],
    }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh SQLite file; postgresql://...: a scratch database")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side (default 3)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request (default 100)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="approximate envelope size (default 1024)")
    parser.add_argument("--latency-samples", type=int, default=100, help="idle publishes timed (default 100)")
    parser.add_argument("--only-latency", action="store_true", help="measure the idle latency and stop")
    parser.add_argument("--baseline", metavar="DIR", help="also run the package found in DIR (see above)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if shutil.which("wrk") is None:
        print("ingest_throughput: needs wrk as the client (apt-get install wrk)", file=sys.stderr)
        return 1
    from webhook_mcp.interfaces.cli import run as run_loop

    print(json.dumps(run_loop(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
