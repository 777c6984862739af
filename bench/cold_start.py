"""Cold start as an assistant's host sees it: spawn ``webhook-mcp serve`` over stdio and time it
until the first ``list_webhooks`` answer, side by side with a bare MCPServer made with the same SDK
(one ``list_webhooks`` tool answering an empty list), in interleaved rounds.

    .venv/bin/python bench/cold_start.py              # 7 rounds, a database already at head
    .venv/bin/python bench/cold_start.py --rounds 11 --json
    .venv/bin/python bench/cold_start.py --also-src /tmp/old/src   # a third column: another checkout

``--also-src`` runs ``webhook-mcp serve`` from another source tree (``git archive <commit> | tar
-x -C /tmp/old``) with this install's dependencies, to compare two versions in one run.

The webhook-mcp database is created (and migrated) once before the rounds, as after a first run:
what is timed is every start after that one."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

BARE_SERVER = """\
from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool(description="List webhooks.")
def list_webhooks() -> dict:
    return {"webhooks": [], "total": 0}


server.run()
"""


def console_script() -> str:
    return str(Path(sys.executable).parent / "webhook-mcp")


async def first_answer(parameters: StdioServerParameters) -> float:
    """Seconds from spawning the server to the first list_webhooks result."""
    started = time.perf_counter()
    async with Client(parameters) as client:
        result = await client.call_tool("list_webhooks", {})
        elapsed = time.perf_counter() - started
    if result.is_error:
        raise SystemExit(f"list_webhooks failed: {result.content}")
    return elapsed


# The other tree's console entry point: interfaces/console.py where it has one, else interfaces/cli.py.
OTHER_SOURCE = """\
import sys
sys.path.insert(0, sys.argv.pop(1))
try:
    from webhook_mcp.interfaces.console import main
except ImportError:
    from webhook_mcp.interfaces.cli import main
sys.exit(main())
"""


def parameters(workdir: Path, also_src: str | None = None) -> dict[str, StdioServerParameters]:
    env = {"PATH": os.environ.get("PATH", ""), "WEBHOOK_MCP_LOG_LEVEL": "WARNING"}
    database = {"WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{workdir / 'webhooks.db'}"}
    bare = workdir / "bare_server.py"
    bare.write_text(BARE_SERVER)
    servers = {
        "webhook-mcp": StdioServerParameters(command=console_script(), args=["serve"], env={**env, **database}),
        "bare MCPServer": StdioServerParameters(command=sys.executable, args=[str(bare)], env=env),
    }
    if also_src is not None:
        servers[f"webhook-mcp at {also_src}"] = StdioServerParameters(
            command=sys.executable, args=["-c", OTHER_SOURCE, also_src, "serve"], env={**env, **database}
        )
    return servers


def migrate_once(workdir: Path) -> None:
    env = {**os.environ, "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{workdir / 'webhooks.db'}"}
    subprocess.run([console_script(), "migrate"], env=env, check=True, capture_output=True)


async def run(rounds: int, also_src: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        migrate_once(workdir)
        servers = parameters(workdir, also_src)
        times: dict[str, list[float]] = {name: [] for name in servers}
        for server in servers.values():  # warm the OS file cache once, untimed
            await first_answer(server)
        for _ in range(rounds):
            for name, server in servers.items():
                times[name].append(await first_answer(server))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "rounds": rounds,
        "median_seconds": {name: round(value, 3) for name, value in medians.items()},
        "all_seconds": {name: [round(value, 3) for value in values] for name, values in times.items()},
        "ratio_to_bare": {name: round(value / medians["bare MCPServer"], 2) for name, value in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--also-src", help="also time webhook-mcp from this source directory")
    args = parser.parse_args()
    result = anyio.run(run, args.rounds, args.also_src)
    if args.json:
        print(json.dumps(result))
        return
    for name, median in result["median_seconds"].items():
        ratio = result["ratio_to_bare"][name]
        print(f"{name:<16} median {median:.3f} s ({ratio}x bare)   rounds: {result['all_seconds'][name]}")


if __name__ == "__main__":
    main()
