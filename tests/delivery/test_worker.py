"""The real CLI in subprocesses: `webhook-mcp worker` surviving a SIGKILL, several workers sharing one
database without delivering anything twice, and `webhook-mcp publish`."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from sqlalchemy import func, select

from conftest import Received, Receiver, make_settings, process_env, wait_until
from webhook_mcp import Hub
from webhook_mcp.storage.schema import deliveries, events

pytestmark = pytest.mark.anyio

EVENT = "order.created"
CLI = shutil.which("webhook-mcp", path=str(Path(sys.executable).parent)) or shutil.which("webhook-mcp")
# Worker settings for these tests. After a SIGKILL, exactly the deliveries the dead worker had claimed
# but not recorded (still leased) come due again when the lease ends, so only those that had also reached
# the receiver can arrive twice: the ones in flight (<= MAX_CONCURRENCY) plus finished ones whose results
# were waiting for the next batched write. The crash test asserts that set bound exactly (the dispatcher
# stops claiming while more than a batch of results waits to be written; see
# test_unrecorded_results_limit_new_claims in test_dispatcher.py).
MAX_CONCURRENCY = 32
BATCH_SIZE = 50

ReceiverFactory = Callable[..., Awaitable[Receiver]]


class IdLog:
    """Receiver responder that records every webhook-id it is sent and answers 200."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, received: Received, _n: int) -> web.Response:
        for name, value in received.headers.items():
            if name.lower() == "webhook-id":
                self.ids.append(value)
                break
        return web.Response(status=200, text="ok")

    @property
    def unique(self) -> int:
        return len(set(self.ids))

    def duplicates(self) -> dict[str, int]:
        return {i: n for i, n in Counter(self.ids).items() if n > 1}


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    env = process_env(
        database_url,
        WEBHOOK_MCP_LEASE_SECONDS="2",
        WEBHOOK_MCP_DELIVERY_TIMEOUT="1",
        WEBHOOK_MCP_MAX_CONCURRENCY=str(MAX_CONCURRENCY),
        WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(MAX_CONCURRENCY),
        WEBHOOK_MCP_BATCH_SIZE=str(BATCH_SIZE),
        WEBHOOK_MCP_RETRY_SCHEDULE="0,0.2,0.2,0.2",
        WEBHOOK_MCP_RETRY_JITTER="0",
        WEBHOOK_MCP_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return "worker running on" in self.output()


@asynccontextmanager
async def workers(
    tmp_path: Path, env: dict[str, str] | list[dict[str, str]], count: int
) -> AsyncIterator[list[Worker]]:
    """Start ``count`` `webhook-mcp worker` processes (a list of environments: one each); kill
    whatever is still alive on the way out."""
    assert CLI is not None, "the webhook-mcp console script is not installed"
    envs = env if isinstance(env, list) else [env] * count
    started: list[Worker] = []
    try:
        for n in range(count):
            started.append(await start_worker(tmp_path, envs[n], f"worker{n}"))
        yield started
    finally:
        for worker in started:
            if worker.proc.returncode is None:
                worker.proc.kill()
                await worker.proc.wait()


async def start_worker(tmp_path: Path, env: dict[str, str], name: str) -> Worker:
    assert CLI is not None
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            CLI, "worker", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    return Worker(proc, log)


async def publish_backlog(hub: Hub, total: int, batch: int = 500, webhooks: int = 1) -> list[str]:
    example = hub.catalog.get(EVENT).example
    ids: list[str] = []
    while len(ids) < total:
        n = min(batch, total - len(ids))
        published = await hub.service.publish_many([(EVENT, example, None)] * n)
        assert all(p.queued == webhooks for p in published)
        ids.extend(p.event_id for p in published)
    return ids


async def leased(hub: Hub) -> set[str]:
    """Event ids of deliveries claimed by some worker and not yet recorded."""
    rows = await hub.store.fetch_all(
        select(deliveries.c.event_id).where(deliveries.c.state == "pending", deliveries.c.lease_owner.is_not(None))
    )
    return {row.event_id for row in rows}


async def delivery_states(hub: Hub) -> Counter[str]:
    rows = await hub.store.fetch_all(select(deliveries.c.state, func.count()).group_by(deliveries.c.state))
    return Counter({state: n for state, n in rows})


async def terminate(worker: Worker, timeout: float = 10.0) -> int:
    worker.proc.send_signal(signal.SIGTERM)
    with anyio.fail_after(timeout):
        return await worker.proc.wait()


# --- crash recovery -------------------------------------------------------------------------------


async def test_worker_killed_mid_backlog_loses_nothing(
    receiver_factory: ReceiverFactory, sqlite_url: str, tmp_path: Path
) -> None:
    log = IdLog()
    receiver = await receiver_factory(responder=log)
    total = 3000
    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        ids = await publish_backlog(hub, total)
        env = worker_env(sqlite_url)

        async with workers(tmp_path, env, 1) as (first,):
            await wait_until(lambda: log.unique >= 300 or first.proc.returncode is not None, timeout=30)
            assert first.proc.returncode is None, first.output()
            first.proc.send_signal(signal.SIGKILL)
            assert await first.proc.wait() == -signal.SIGKILL
        # What the killed worker had claimed but not recorded; only these may be sent twice.
        in_doubt = await leased(hub)
        received_before = Counter(log.ids)
        assert 300 <= len(received_before) < total, "the kill should land mid-backlog"

        async with workers(tmp_path, env, 1) as (second,):
            await wait_until(lambda: log.unique == total or second.proc.returncode is not None, timeout=45)
            assert second.proc.returncode is None, second.output()
            await wait_until(lambda: _all_succeeded(hub, total), timeout=10)

            assert set(log.ids) == set(ids), "every event must reach the receiver"
            duplicates = log.duplicates()
            assert set(duplicates) <= in_doubt & set(received_before), (
                "only deliveries the killed worker had in flight or unrecorded may be sent again"
            )
            assert all(n == 2 for n in duplicates.values()), "the second worker itself must not send twice"

            assert await terminate(second, timeout=5) == 0, second.output()
        assert "Traceback" not in second.output()


async def _all_succeeded(hub: Hub, total: int) -> bool:
    return await delivery_states(hub) == Counter({"succeeded": total})


# --- several workers on one database ----------------------------------------------------------------


async def drain_with_two_workers(
    receiver_factory: ReceiverFactory, database_url: str, tmp_path: Path, total: int
) -> None:
    # Work spreads across workers by endpoint (a worker keeps the slots it holds), so: several.
    logs = [IdLog() for _ in range(4)]
    receivers = [await receiver_factory(responder=log) for log in logs]
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        for receiver in receivers:
            await hub.service.create_webhook(receiver.url, [EVENT])
        env = worker_env(database_url, WEBHOOK_MCP_LEASE_SECONDS="30")
        async with workers(tmp_path, env, 2) as pair:
            await wait_until(lambda: all(w.running() or w.proc.returncode is not None for w in pair), timeout=20)
            assert all(w.proc.returncode is None for w in pair), [w.output() for w in pair]

            owners: set[str] = set()

            async def watch_owners() -> None:
                while True:
                    rows = await hub.store.fetch_all(
                        select(deliveries.c.lease_owner).where(deliveries.c.lease_owner.is_not(None)).distinct()
                    )
                    owners.update(row.lease_owner for row in rows)
                    await anyio.sleep(0.01)

            events = total // len(receivers)
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_owners)
                ids = await publish_backlog(hub, events, webhooks=len(receivers))
                await wait_until(lambda: all(log.unique == events for log in logs), timeout=45)
                await wait_until(lambda: _all_succeeded(hub, events * len(receivers)), timeout=10)
                tg.cancel_scope.cancel()

            with anyio.move_on_after(0.3):
                await wait_until(lambda: any(len(log.ids) > events for log in logs))
            for log in logs:
                assert set(log.ids) == set(ids)
                assert log.duplicates() == {}
                assert len(log.ids) == events
            assert len(owners) == 2, f"both workers should have claimed work, saw {owners}"

            codes = [await terminate(w) for w in pair]
            assert codes == [0, 0], [w.output() for w in pair]


async def test_two_workers_sqlite_no_duplicates(
    receiver_factory: ReceiverFactory, sqlite_url: str, tmp_path: Path
) -> None:
    await drain_with_two_workers(receiver_factory, sqlite_url, tmp_path, 2000)


async def test_two_workers_postgres_no_duplicates(
    receiver_factory: ReceiverFactory, postgres_url: str, tmp_path: Path
) -> None:
    await drain_with_two_workers(receiver_factory, postgres_url, tmp_path, 1000)


# --- webhook-mcp publish ----------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str], timeout: float = 30.0) -> tuple[int, str, str]:
    assert CLI is not None
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        with anyio.fail_after(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_publish(receiver: Receiver, sqlite_url: str, tmp_path: Path) -> None:
    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        example = hub.catalog.get(EVENT).example
        good = tmp_path / "order.json"
        good.write_text(json.dumps(example))
        bad = tmp_path / "broken.json"
        bad.write_text('{"id": "ord_1", ')
        env = worker_env(sqlite_url, WEBHOOK_MCP_LOG_LEVEL="WARNING")

        ok, invalid_json, unknown_type, missing_file, not_object, bad_payload = await asyncio.gather(
            run_cli("publish", EVENT, "--data", f"@{good}", env=env),
            run_cli("publish", EVENT, "--data", f"@{bad}", env=env),
            run_cli("publish", "order.nope", "--data", f"@{good}", env=env),
            run_cli("publish", EVENT, "--data", f"@{tmp_path / 'absent.json'}", env=env),
            run_cli("publish", EVENT, "--data", "[1, 2]", env=env),
            run_cli("publish", EVENT, "--data", '{"id": 5.5}', env=env),
        )

        code, out, err = ok
        assert code == 0, err
        words = out.split()
        assert len(words) >= 2 and words[0].startswith("evt_"), out
        assert "queued for 1 webhook(s)" in out
        body = await hub.store.scalar(select(events.c.body).where(events.c.id == words[0]))
        queued = await hub.store.scalar(select(func.count()).select_from(deliveries))
        assert body is not None and json.loads(body)["data"] == example
        assert queued == 1

        for result, needle in [
            (invalid_json, "is not valid JSON"),
            (unknown_type, "unknown event type 'order.nope'"),
            (missing_file, "cannot read --data file"),
            (not_object, "must hold a JSON object"),
            (bad_payload, "does not match its schema"),
        ]:
            code, out, err = result
            assert code != 0, (needle, out, err)
            assert needle in err, (needle, err)
            assert err.startswith("webhook-mcp: ") or "\nwebhook-mcp: " in err, err
            assert "Traceback" not in err
            assert out == ""
        assert await hub.store.scalar(select(func.count()).select_from(events)) == 1


async def test_cli_publish_idempotency_key(receiver: Receiver, sqlite_url: str, tmp_path: Path) -> None:
    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        payload = json.dumps(hub.catalog.get(EVENT).example)
    env = worker_env(sqlite_url, WEBHOOK_MCP_LOG_LEVEL="WARNING")
    args = ("publish", EVENT, "--data", payload, "--idempotency-key", "order-1")
    code1, out1, err1 = await run_cli(*args, env=env)
    code2, out2, err2 = await run_cli(*args, env=env)
    assert code1 == 0 and code2 == 0, (err1, err2)
    assert out1.split()[0] == out2.split()[0]
    assert "duplicate" not in out1
    assert "duplicate idempotency key" in out2


# --- liveness: a paused worker keeps its work, a dead one loses it at once -------------------------------

STARTED = re.compile(r"dispatcher (\S+) started")
PAUSE = 1.5  # shorter than the lease; a paused worker is never taken for dead, however long


async def _leases_of(hub: Hub, owner: str) -> set[int]:
    d = deliveries.c
    rows = await hub.store.fetch_all(select(d.id).where(d.state == "pending", d.lease_owner == owner))
    return {row.id for row in rows}


def _stopped(pid: int) -> bool:
    """The process is stopped (its state in /proc is T), not merely sent the signal."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


async def _none_left(hub: Hub, owner: str) -> bool:
    return not await _leases_of(hub, owner)


async def test_sqlite_worker_paused_keeps_its_leases_killed_loses_them_at_once(
    receiver_factory: ReceiverFactory, sqlite_url: str, tmp_path: Path
) -> None:
    log = IdLog()
    receiver = await receiver_factory(responder=log)
    total = 3000
    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        ids = await publish_backlog(hub, total)
        # The endpoint's limit is twice what one worker may send, so both always hold some of it.
        env = worker_env(
            sqlite_url,
            WEBHOOK_MCP_LEASE_SECONDS="60",
            WEBHOOK_MCP_DELIVERY_TIMEOUT="5",
            WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(2 * MAX_CONCURRENCY),
        )
        async with workers(tmp_path, env, 2) as (doomed, survivor):
            found = await wait_until(lambda: STARTED.search(doomed.output()), timeout=20)
            doomed_id = found.group(1)
            await wait_until(lambda: _leases_of(hub, doomed_id), timeout=20, interval=0.005)

            # Paused (SIGSTOP) for a while: alive, so nothing it holds is taken from it.
            doomed.proc.send_signal(signal.SIGSTOP)
            await wait_until(lambda: _stopped(doomed.proc.pid), timeout=5)
            held = await _leases_of(hub, doomed_id)
            await anyio.sleep(PAUSE)  # the pause itself is what is tested
            assert held <= await _leases_of(hub, doomed_id), "a paused worker's leases were taken"
            doomed.proc.send_signal(signal.SIGCONT)
            await wait_until(lambda: log.unique >= total // 3, timeout=30)
            assert log.duplicates() == {}, "a pause must cause no duplicates"

            # Killed: its leases end within a second or so, not when they run out a minute later.
            doomed.proc.send_signal(signal.SIGKILL)
            assert await doomed.proc.wait() == -signal.SIGKILL
            # What it held as it died (a loaded machine may catch it between claims, holding none).
            held_at_death = await _leases_of(hub, doomed_id)
            received_before = Counter(log.ids)
            # (Within a second when the machine is not loaded: bench/worker_takeover.py measures it.)
            await wait_until(lambda: _none_left(hub, doomed_id), timeout=5, interval=0.02)
            await wait_until(lambda: _all_succeeded(hub, total), timeout=45)
            assert set(log.ids) == set(ids), "every event must reach the receiver"
            assert set(log.duplicates()) <= set(received_before), "only what the dead worker had sent may repeat"
            assert await terminate(survivor) == 0, survivor.output()
        assert "took over" in survivor.output() or not held_at_death
