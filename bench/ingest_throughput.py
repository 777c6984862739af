"""HTTP ingest throughput: ``POST /v1/events`` of a real ``webhook-mcp serve`` beside a bare
uvicorn+starlette endpoint that only parses the same JSON and answers 202, in one run, with the
same client (wrk: 32 connections, ~1 KB events), rounds interleaved so the machine's drift hits
both alike. One webhook is subscribed and deliveries go out while the server ingests (SQLite: the
server's own dispatcher; PostgreSQL: ``serve --no-dispatcher`` and one ``worker`` process).

    flock /tmp/bench.lock .venv/bin/python bench/ingest_throughput.py
    flock /tmp/bench.lock .venv/bin/python bench/ingest_throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Measures: single-event POSTs (project vs bare), batches of 100 (events/s), and publish -> first
delivery latency when idle (sequential single publishes to a second webhook). Needs ``wrk``
(``apt-get install wrk``). Exit status 0 when the run completes, targets met or not.
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
LATENCY_P50_BEFORE_MS = {"sqlite": 5.0, "postgresql": 8.0}
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


async def latencies(port: int, arrived: dict[str, float], signal: asyncio.Event, count: int) -> list[float]:
    """Publish one order.paid at a time (the server otherwise idle); ms until it is delivered."""
    result = []
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {TOKEN}"}) as http:
        for n in range(count):
            signal.clear()
            started = time.perf_counter()
            async with http.post(
                f"http://127.0.0.1:{port}/v1/events", json={"type": "order.paid", "data": {"id": n}}
            ) as response:
                event_id = (await response.json())["event_id"]
            async with asyncio.timeout(10):
                while event_id not in arrived:
                    await signal.wait()
                    signal.clear()
            result.append((arrived[event_id] - started) * 1000)
            await asyncio.sleep(0.02)  # idle between publishes, as the measure says
    return result


# -- the run --------------------------------------------------------------------------------------


async def prepare(database_url: str, hook_url: str, latency_url: str) -> None:
    from webhook_mcp import Hub, Settings

    settings = Settings(database_url=database_url, allowed_private_networks="127.0.0.0/8")  # type: ignore[arg-type]
    async with Hub.open(settings, dispatch=False) as hub:
        await hub.service.create_webhook(hook_url, ["order.created"])
        await hub.service.create_webhook(latency_url, ["order.paid"])


def bodies(events_per_batch: int, payload_bytes: int) -> tuple[bytes, bytes]:
    from webhook_mcp.core.catalog import load_catalog

    data = padded_data(load_catalog().get("order.created").example, payload_bytes)
    single = {"type": "order.created", "data": data}
    return json.dumps(single).encode(), json.dumps({"events": [single] * events_per_batch}).encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kind = "postgresql" if (args.database_url or "").startswith("postgres") else "sqlite"
    single, batch = bodies(args.batch, args.payload_bytes)
    results: dict[str, Any] = {"database": kind, "connections": CONNECTIONS, "single_body_bytes": len(single)}
    cli = [sys.executable, "-m", "webhook_mcp.interfaces.cli"]
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with receiver(in_process=False, verify_every=0, lean=True) as hook_port, timing_receiver() as timing:
            latency_url, arrived, signal = timing
            await prepare(database_url, f"http://127.0.0.1:{hook_port}/hook", latency_url)
            env = server_env(database_url)
            project_port, bare_port = free_port(), free_port()
            serve = [*cli, "serve", "--transport", "streamable-http", "--port", str(project_port)]
            commands = [serve] if kind == "sqlite" else [[*serve, "--no-dispatcher"], [*cli, "worker"]]
            bare = [sys.executable, __file__, "--bare-server", str(bare_port)]
            with processes(commands, env, project_port), processes([bare], env, bare_port):
                lat = await latencies(project_port, arrived, signal, args.latency_samples)
                results["latency_ms"] = {
                    "p50": round(statistics.median(lat), 2),
                    "p90": round(statistics.quantiles(lat, n=10)[-1], 2),
                }
                delivered = 0
                rounds: dict[str, list[float]] = {"project": [], "bare": []}
                for _ in range(args.rounds):
                    for name, port in (("bare", bare_port), ("project", project_port)):
                        outcome = await asyncio.to_thread(wrk, port, single, args.seconds, workdir)
                        if outcome["non_2xx"]:
                            raise RuntimeError(f"{name}: {outcome['non_2xx']} answers were not 2xx")
                        rounds[name].append(outcome["rate"])
                        if name == "project":
                            delivered += int(outcome["requests"])
                            await drained(hook_port, delivered)
                batch_rates = []
                for _ in range(args.rounds):
                    outcome = await asyncio.to_thread(wrk, project_port, batch, args.seconds, workdir)
                    if outcome["non_2xx"]:
                        raise RuntimeError(f"batches: {outcome['non_2xx']} answers were not 2xx")
                    batch_rates.append(outcome["rate"] * args.batch)
                    delivered += int(outcome["requests"]) * args.batch
                    results["batch_drain_seconds"] = round(await drained(hook_port, delivered, timeout=600), 1)
    project, bare_rate = statistics.median(rounds["project"]), statistics.median(rounds["bare"])
    results |= {
        "single_per_s": {"project": round(project), "bare": round(bare_rate), "rounds": rounds},
        "single_ratio": round(project / bare_rate, 3),
        "batch_events_per_s": round(statistics.median(batch_rates)),
        "batch_rounds": [round(rate) for rate in batch_rates],
        "delivered": delivered,
    }
    results["targets"] = {
        "single_ratio": [TARGET_SINGLE_RATIO[kind], results["single_ratio"] >= TARGET_SINGLE_RATIO[kind]],
        "batch_events_per_s": [
            TARGET_BATCH_EVENTS_PER_S[kind],
            results["batch_events_per_s"] >= TARGET_BATCH_EVENTS_PER_S[kind],
        ],
        "latency_p50_ms": [LATENCY_P50_BEFORE_MS[kind], results["latency_ms"]["p50"] <= LATENCY_P50_BEFORE_MS[kind]],
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
