"""Shared fixtures: real SQLite files, real PostgreSQL databases, real receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import atexit
import base64
import inspect
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from aiohttp import web

from webhook_mcp import Hub, Settings
from webhook_mcp.core.ids import new_event_id
from webhook_mcp.storage.schema import deliveries, events

POSTGRES_ADMIN_URL = os.environ.get("WEBHOOK_MCP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]

# Signing secrets are encrypted at rest whatever the database: every test, and every process a test
# starts, shares one key (so many hubs and workers open quickly), and a key file a test process
# creates lands in a scratch directory, never in the user's config directory.
TEST_SECRET_KEY = base64.urlsafe_b64encode(b"webhook-mcp test suite key 32 by").decode()
_SCRATCH = tempfile.mkdtemp(prefix="webhook-mcp-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ.setdefault("WEBHOOK_MCP_SECRET_KEY", TEST_SECRET_KEY)
os.environ["WEBHOOK_MCP_SECRET_KEY_FILE"] = os.path.join(_SCRATCH, "secret.key")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Check ``predicate`` (sync or async) every few ms until it is truthy; fail after ``timeout`` s.

    For state in a database another process writes, where there is no event to wait on."""
    with anyio.fail_after(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await anyio.sleep(interval)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: loopback allowed, a tiny retry schedule and fast polling, so no test waits long."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "allowed_private_networks": LOOPBACK,
        "retry_schedule": (0.0, 0.05, 0.05),
        "retry_jitter": 0.0,
        "poll_interval": 0.05,
        "delivery_timeout": 2.0,
        "lease_seconds": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


def migrate(database_url: str, revision: str, *, down: bool = False) -> None:
    """Move the schema to ``revision``, as an older or newer release left it."""
    from alembic import command

    from webhook_mcp.storage import engine as database

    engine = database.create_migration_engine(database_url)
    config = database._alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
            database.check_foreign_keys(conn)
    finally:
        engine.dispose()


def process_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a webhook-mcp process a test starts: this one's without outside
    WEBHOOK_MCP_ settings, plus the test database, loopback receivers, fast polling and the
    suite's key; ``settings`` (e.g. WEBHOOK_MCP_LEASE_SECONDS="2") add to or override those."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_MCP_")}
    env.update(
        WEBHOOK_MCP_DATABASE_URL=database_url,
        WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
        WEBHOOK_MCP_POLL_INTERVAL="0.1",
        WEBHOOK_MCP_SECRET_KEY=os.environ["WEBHOOK_MCP_SECRET_KEY"],
        WEBHOOK_MCP_SECRET_KEY_FILE=os.environ["WEBHOOK_MCP_SECRET_KEY_FILE"],
    )
    env.update(settings)
    return env


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'webhooks.db'}"


def _admin_connect() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql://", 1), autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"webhook_mcp_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=[*BACKENDS, "all"],
        default=os.environ.get("WEBHOOK_MCP_TEST_BACKEND", "all"),
        help="database(s) the tests that take `database_url` (or `hub`) run against "
        "(default: all; or set WEBHOOK_MCP_TEST_BACKEND)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend")
        metafunc.parametrize("database_url", BACKENDS if chosen == "all" else [chosen], indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each selected database (``--backend``), for every test whose rules touch SQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'webhooks.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    """A hub without a background dispatcher: tests of the service stay deterministic."""
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        yield opened


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Received, int], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that records what it gets and answers as told.

    ``statuses`` is consumed one per request (the last one repeats); ``responder`` overrides it."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    headers: dict[str, str] = field(default_factory=dict)
    responder: Responder | None = None
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        self._changed.set()
        if self.hang:
            await self.release.wait()
        if self.responder is not None:
            result = self.responder(received, len(self.requests))
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]
        index = min(len(self.requests), len(self.statuses)) - 1
        return web.Response(status=self.statuses[index], text="received", headers=self.headers)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests have arrived, failing after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.requests


async def start_receiver(**options: Any) -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver(**options)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/webhooks"
    return receiver, runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started, runner = await start_receiver()
    try:
        yield started
    finally:
        started.release.set()
        await runner.cleanup()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """For tests that need several receivers (one failing, one healthy...)."""
    runners: list[tuple[Receiver, web.AppRunner]] = []

    async def make(**options: Any) -> Receiver:
        pair = await start_receiver(**options)
        runners.append(pair)
        return pair[0]

    try:
        yield make
    finally:
        for started, runner in runners:
            started.release.set()
            await runner.cleanup()


def text_of(result: Any) -> str:
    """A tool result's text blocks, joined: what an assistant reads."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def call_tool(client: Any, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, f"{name}({arguments}) failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict), f"{name} returned no structured content"
    return result.structured_content


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``webhook-mcp ARGS`` in a fresh interpreter, as a shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "webhook_mcp.interfaces.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def queue_due(hub: Hub, webhook_id: int, count: int, due: float, event_type: str = "order.created") -> None:
    """Queue ``count`` due deliveries (and their events) for one webhook in one transaction,
    faster than publishing them: for tests of what a backlog costs."""
    ids = [new_event_id() for _ in range(count)]
    event_rows = [{"id": i, "type": event_type, "body": "{}", "created_at": due} for i in ids]
    delivery_rows = [
        {
            "webhook_id": webhook_id,
            "event_id": event_id,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": due + n * 1e-3,
            "created_at": due,
            "updated_at": due,
        }
        for n, event_id in enumerate(ids)
    ]

    def work(conn: Any) -> None:
        conn.execute(events.insert(), event_rows)
        conn.execute(deliveries.insert(), delivery_rows)

    await hub.store._write(work)


async def wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until a server process accepts connections on ``port``; its stderr if it exits first."""
    with anyio.fail_after(timeout):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return
