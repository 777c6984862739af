"""What the request-head limits of ``serve`` cost, measured side by side in one run:

- ``bare``: a bare Starlette endpoint on uvicorn (parse the JSON body, answer 202): the reference;
- ``plain``: webhook-mcp's HTTP app (guard, token, ``POST /v1/events`` on SQLite) on plain uvicorn;
- ``limited``: the same app on the server ``serve`` runs (interfaces/http/server.py).

Each server runs in its own process on uvloop, as ``serve`` does. The load is single-event
``POST /v1/events`` over 32 keep-alive connections (a bounded number of requests per round, rounds
alternating between servers, since this machine's speed drifts), then sequential MCP ``tools/call``
round trips. Last, an attack: one connection sends a 32 MiB header line without a token while a
second one sends ordinary requests; it prints how long the attacker waits for its answer and how
slow the ordinary requests get meanwhile.

    flock /tmp/bench.lock .venv/bin/python bench/http_limits.py [--requests 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

TOKEN = "bench-token"
MODES = ("bare", "plain", "limited")
CONNECTIONS = 32


# --- the servers (run as: http_limits.py --serve MODE PORT DATABASE_URL) ----------------------------


def serve(mode: str, port: int, database_url: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from webhook_mcp import Hub, Settings
    from webhook_mcp.interfaces.cli import run
    from webhook_mcp.interfaces.http.app import create_http_app
    from webhook_mcp.interfaces.http.server import uvicorn_config

    async def bare_events(request: Request) -> JSONResponse:
        payload = json.loads(await request.body())
        return JSONResponse({"event_id": "evt_x", "type": payload["type"], "queued": 0}, status_code=202)

    async def main() -> None:
        if mode == "bare":
            app = Starlette(routes=[Route("/v1/events", bare_events, methods=["POST"])])
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
            await uvicorn.Server(config).serve()
            return
        settings = Settings(database_url=database_url, api_token=TOKEN, run_dispatcher=False, log_level="WARNING")
        async with Hub.open(settings, dispatch=False) as hub:
            app = create_http_app(hub, "streamable-http", "127.0.0.1", port)
            if mode == "plain":
                config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
            else:
                config = uvicorn_config(app, "127.0.0.1", port, "WARNING", head_timeout=10.0)
                config.access_log = False
            await uvicorn.Server(config).serve()

    run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def servers(directory: Path) -> Iterator[dict[str, int]]:
    ports = {mode: free_port() for mode in MODES}
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, str(port), f"sqlite:///{directory / mode}.db"],
            stdout=subprocess.DEVNULL,
        )
        for mode, port in ports.items()
    ]
    try:
        for port in ports.values():
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"a server did not start on port {port}") from None
                    time.sleep(0.05)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


# --- the load ---------------------------------------------------------------------------------------


def events_request(port: int) -> bytes:
    from webhook_mcp.core.catalog import load_catalog

    body = json.dumps({"type": "order.created", "data": load_catalog().get("order.created").example}).encode()
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def post_load(port: int, requests: int) -> tuple[float, list[float]]:
    """Requests/s and per-request latencies for ``requests`` POSTs over 32 keep-alive connections."""
    request = events_request(port)
    remaining = requests
    latencies: list[float] = []

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                assert status == 202, status
        finally:
            writer.close()

    started = time.perf_counter()
    async with asyncio.timeout(300):
        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return requests / (time.perf_counter() - started), latencies


async def mcp_latencies(port: int, calls: int) -> list[float]:
    """Sequential MCP ``tools/call list_webhooks`` round trips over streamable HTTP."""
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "b", "version": "1"},
            },
        }
        response = await client.post(url, json=init)
        response.raise_for_status()
        session = {k: v for k, v in response.headers.items() if k.lower() == "mcp-session-id"}
        client.headers.update(session)
        await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        latencies = []
        for number in range(1, calls + 1):
            call = {"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": {"name": "list_webhooks"}}
            started = time.perf_counter()
            response = await client.post(url, json={**call, "params": {"name": "list_webhooks", "arguments": {}}})
            assert response.status_code == 200 and "webhooks" in response.text, response.text[:300]
            latencies.append(time.perf_counter() - started)
        return latencies


async def attack(port: int, header_mib: int) -> tuple[float, float, int, int]:
    """Seconds until the attacker's answer, the worst ordinary request meanwhile, how many were
    answered, and the attacker's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    worst = 0.0
    answered = 0
    done = asyncio.Event()

    async def ordinary() -> None:
        nonlocal worst, answered
        request = f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not done.is_set():
                started = time.perf_counter()
                w.write(request)
                await read_response(r)
                worst = max(worst, time.perf_counter() - started)
                answered += 1
                await asyncio.sleep(0.01)  # a steady trickle of ordinary requests
        finally:
            w.close()

    side = asyncio.create_task(ordinary())
    started = time.perf_counter()
    head = f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: ".encode()
    chunk = b"a" * (1024 * 1024)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(head)
            for _ in range(header_mib):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"\r\n\r\n")
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        async with asyncio.timeout(120):
            status = await read_response(reader)
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        sending.cancel()
        writer.close()
        await asyncio.gather(side, sending, return_exceptions=True)
    return elapsed, worst, answered, status


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
    return f"p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"


async def measure(ports: dict[str, int], requests: int, rounds: int, mcp_calls: int) -> None:
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    for mode in MODES:  # warm up: imports, first connections, SQLite pages
        await post_load(ports[mode], 200)
    for round_number in range(rounds):
        order = MODES if round_number % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            rate, seen = await post_load(ports[mode], requests)
            rates[mode].append(rate)
            latencies[mode].extend(seen)
    print(f"POST /v1/events, single events, {CONNECTIONS} connections, {requests} requests x {rounds} rounds")
    for mode in MODES:
        median = statistics.median(rates[mode])
        ratio = median / statistics.median(rates["bare"])
        rounds_shown = " ".join(f"{rate:.0f}" for rate in rates[mode])
        print(
            f"  {mode:8} {median:8.0f} req/s  ({ratio:.2f}x bare)  {summary(latencies[mode])}  rounds: {rounds_shown}"
        )
    print(f"MCP tools/call list_webhooks, {mcp_calls} sequential calls x {rounds} rounds")
    mcp: dict[str, list[float]] = {"plain": [], "limited": []}
    for round_number in range(rounds):
        for mode in ("plain", "limited") if round_number % 2 == 0 else ("limited", "plain"):
            mcp[mode].extend(await mcp_latencies(ports[mode], mcp_calls))
    for mode, seen in mcp.items():
        print(f"  {mode:8} {summary(seen)}")


async def measure_attack(ports: dict[str, int], header_mib: int) -> None:
    print(f"one connection sends a {header_mib} MiB header line without a token")
    for mode in ("plain", "limited"):
        elapsed, worst, answered, status = await attack(ports[mode], header_mib)
        print(
            f"  {mode:8} answered {status} after {elapsed:6.2f} s; meanwhile {answered} ordinary requests, "
            f"the slowest {worst * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="POSTs per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mcp-calls", type=int, default=200)
    parser.add_argument("--attack-mib", type=int, default=32)
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "PORT", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        mode, port, database_url = args.serve
        serve(mode, int(port), database_url)
        return
    print(f"cpus: {os.cpu_count()} (shared machine: compare the ratios)")
    with tempfile.TemporaryDirectory() as directory, servers(Path(directory)) as ports:
        from webhook_mcp.interfaces.cli import run

        run(measure(ports, args.requests, args.rounds, args.mcp_calls))
        run(measure_attack(ports, args.attack_mib))


if __name__ == "__main__":
    main()
