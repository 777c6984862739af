"""The installed console script over stdio, spawned exactly as Claude Desktop runs it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import standardwebhooks
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import Receiver, text_of, wait_until
from conftest import call_tool as call

pytestmark = pytest.mark.anyio


def console_script() -> str:
    beside_python = Path(sys.executable).parent / "webhook-mcp"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("webhook-mcp")
    if found is None:
        pytest.fail("the webhook-mcp console script is not installed (pip install -e .)")
    return found


def server_parameters(database: Path, **extra_env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=console_script(),
        args=["serve"],
        env={
            "WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{database}",
            "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
            "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
            "PATH": os.environ.get("PATH", ""),
            **extra_env,
        },
        cwd=str(database.parent),
    )


async def test_console_script_serves_mcp_over_stdio(tmp_path: Path, receiver: Receiver) -> None:
    database = tmp_path / "claude-desktop.db"
    with anyio.fail_after(60):
        async with Client(server_parameters(database)) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"list_webhooks", "create_webhook", "test_webhook", "get_webhook_logs", "send_event"} <= tools
            assert len(tools) == 18

            hook = await call(client, "create_webhook", {"url": receiver.url, "events": ["order.created"]})
            secret = (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"]
            test = await call(client, "test_webhook", {"id": hook["id"]})
            assert test["success"] is True and test["status_code"] == 200
            (received,) = receiver.requests
            assert standardwebhooks.Webhook(secret).verify(received.body, received.headers)["id"] == test["event_id"]

            logs = await call(client, "get_webhook_logs", {"id": hook["id"]})
            (entry,) = logs["attempts"]
            assert entry["is_test"] is True and entry["status_code"] == 200 and entry["success"] is True

            # The dispatcher runs inside `serve`: a published event is delivered in the background.
            example = (await call(client, "get_webhook_sample_payload", {"event": "order.created"}))["body"]["data"]
            published = await call(client, "send_event", {"event": "order.created", "data": example})
            assert published["queued"] == 1
            requests = await receiver.wait_for(2)
            assert standardwebhooks.Webhook(secret).verify(requests[1].body, requests[1].headers)["data"] == example

            errored = await client.call_tool("get_webhook", {"id": 42})
            assert errored.is_error and "no webhook with id 42" in text_of(errored)
    # The database is the file the environment named, and it persists for the next start.
    assert database.exists()
    with anyio.fail_after(60):
        async with Client(server_parameters(database)) as client:
            listed = await call(client, "list_webhooks", {})
            assert [w["url"] for w in listed["webhooks"]] == [receiver.url]


async def test_setup_and_debug_workflows_end_to_end_with_the_inbox(tmp_path: Path) -> None:
    """No receiver of our own and no private networks allowed: the built-in inbox is the endpoint.
    Set one up, test it, send a real event, then rehearse a 500 and watch the retry succeed."""
    parameters = server_parameters(
        tmp_path / "inbox.db",
        WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS="",
        WEBHOOK_MCP_RETRY_SCHEDULE="0,2,2,2",
        WEBHOOK_MCP_RETRY_JITTER="0",
        WEBHOOK_MCP_POLL_INTERVAL="0.1",
    )
    with anyio.fail_after(90):
        async with Client(parameters) as client:
            inbox = await call(client, "open_inbox", {})
            ident = {"inbox_id": inbox["inbox_id"]}

            async def received(count: int) -> list[dict[str, Any]]:
                read = await call(client, "read_inbox", ident)
                while read["received"] < count:  # each call waits for one more request at most
                    read = await call(client, "read_inbox", {**ident, "wait_seconds": 2})
                assert read["received"] == count
                return list(read["requests"])

            hook = await call(client, "create_webhook", {"url": inbox["url"], "events": ["order.created"]})
            assert (await call(client, "test_webhook", {"id": hook["id"]}))["success"] is True
            sample = await call(client, "get_webhook_sample_payload", {"event": "order.created"})
            await call(client, "send_event", {"event": "order.created", "data": sample["body"]["data"]})
            newest, test = await received(2)
            assert (test["event_type"], newest["event_type"]) == ("webhook.test", "order.created")
            assert test["signature_valid"] is True and newest["signature_valid"] is True

            await call(client, "open_inbox", {**ident, "status": 500})
            event = await call(client, "send_event", {"event": "order.created", "data": sample["body"]["data"]})
            failed = (await received(3))[0]
            assert failed["event_id"] == event["event_id"]
            await call(client, "open_inbox", {**ident, "status": 200})
            retried = (await received(4))[0]
            assert retried["event_id"] == event["event_id"] and retried["signature_valid"] is True

            async def attempts_done(count: int) -> list[tuple[int, bool]] | None:
                found = await attempts()
                return found if len(found) >= count else None

            async def attempts() -> list[tuple[int, bool]]:
                logs = await call(client, "get_webhook_logs", {"id": hook["id"]})
                return [
                    (entry["attempt_number"], entry["success"])
                    for entry in logs["attempts"]
                    if entry["event_id"] == event["event_id"]
                ]

            # The success is recorded just after the inbox answered: poll the database for it.
            assert await wait_until(lambda: attempts_done(2)) == [(2, True), (1, False)]
            stats = await call(client, "get_webhook_stats", {"id": hook["id"]})
            assert stats["failed"] == 1 and stats["succeeded"] == 3


# What the first answer over stdio must not wait for, on SQLite: migrations, the PostgreSQL driver
# and dialect, metrics, payload validation, YAML, the HTTP sender and the dispatcher, the web UI.
LAZY = (
    "alembic",
    "psycopg",
    "prometheus_client",
    "jsonschema",
    "jsonschema_rs",
    "yaml",
    "aiohttp",
    "httpx",
    "jinja2",
    "sqlalchemy.dialects.postgresql",
    "webhook_mcp.delivery.dispatcher",
    "webhook_mcp.delivery.sender",
    "webhook_mcp.interfaces.http",
    "webhook_mcp.interfaces.web",
)

# The console script as Claude Desktop runs it, except that what follows the first answer (the
# dispatcher's start) never comes, and the modules loaded by then are written out at exit.
SERVE_AND_RECORD = """\
import atexit, json, sys
from pathlib import Path
from webhook_mcp.interfaces import console, lifecycle
lifecycle.AFTER_FIRST_ANSWER = lifecycle.AT_THE_LATEST = 3600.0
record = Path(sys.argv[1])
part = record.with_suffix(".part")
atexit.register(lambda: (part.write_text(json.dumps(sorted(sys.modules))), part.replace(record)))
sys.argv[1:] = ["serve"]
sys.exit(console.main())
"""


async def test_first_answer_imports_only_what_it_needs(tmp_path: Path) -> None:
    database = tmp_path / "lean.db"
    migrated = await anyio.run_process([console_script(), "migrate"], env=server_parameters(database).env)
    assert migrated.returncode == 0
    record = tmp_path / "modules.json"
    parameters = server_parameters(database).model_copy(
        update={"command": sys.executable, "args": ["-c", SERVE_AND_RECORD, str(record)]}
    )
    with anyio.fail_after(60):
        async with Client(parameters) as client:
            assert (await call(client, "list_webhooks", {}))["webhooks"] == []
        await wait_until(record.exists, timeout=30)
    modules = set(json.loads(record.read_text()))
    assert "webhook_mcp.interfaces.mcp.tools.webhooks" in modules
    loaded = sorted(m for m in modules if any(m == lazy or m.startswith(f"{lazy}.") for lazy in LAZY))
    assert loaded == [], "imported before the first answer; import these where they are used"
