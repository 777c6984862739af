"""Scale-out on PostgreSQL with real `webhook-mcp worker` processes: three workers sharing a large
backlog exactly once within the cluster-wide per-endpoint limit, a worker SIGKILLed mid-backlog, and
workers riding out a restart of their own private PostgreSQL server."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from sqlalchemy import and_, exists, func, select, text
from test_worker import (
    EVENT,
    MAX_CONCURRENCY,
    IdLog,
    ReceiverFactory,
    Worker,
    delivery_states,
    publish_backlog,
    terminate,
    worker_env,
    workers,
)

from conftest import Received, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.storage.schema import deliveries, delivery_attempts

pytestmark = pytest.mark.anyio

STARTED = re.compile(r"dispatcher (\S+) started")
STOPPED = re.compile(r"dispatcher (\S+) stopped after (\d+) successful deliveries")
CLAIMS_FAILED = "claiming deliveries failed"
CLAIMS_WORK = "claiming deliveries works again"
DATABASE_TROUBLE = (CLAIMS_FAILED, "delivery results failed")


def webhook_id(received: Received) -> str:
    return next(value for name, value in received.headers.items() if name.lower() == "webhook-id")


class Endpoint:
    """Responder that records each webhook-id and the most requests it ever had open at once.

    Each answer takes ``latency`` seconds, as a real endpoint doing work would, so requests overlap
    and a broken per-endpoint limit shows up as a peak above it."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.ids: list[str] = []
        self.open = 0
        self.peak = 0

    async def __call__(self, received: Received, _n: int) -> web.Response:
        self.ids.append(webhook_id(received))
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await anyio.sleep(self.latency)
        finally:
            self.open -= 1
        return web.Response(status=200, text="ok")


async def succeeded(hub: Hub) -> int:
    return int(
        await hub.store.scalar(select(func.count()).select_from(deliveries).where(deliveries.c.state == "succeeded"))
    )


async def leased_count(hub: Hub) -> int:
    return int(
        await hub.store.scalar(
            select(func.count()).select_from(deliveries).where(deliveries.c.lease_owner.is_not(None))
        )
    )


async def until_all_succeeded(hub: Hub, total: int, running: list[Worker], timeout: float) -> None:
    """Wait for every delivery to be recorded as succeeded; stop early if a worker dies, and on
    timeout say how far the backlog got and what the workers logged last."""
    progress: list[int] = []

    async def done() -> bool:
        if any(w.proc.returncode is not None for w in running):
            return True
        progress.append(await succeeded(hub))
        return progress[-1] == total

    try:
        await wait_until(done, timeout=timeout, interval=0.2)
    except TimeoutError:
        tails = "\n".join(w.output()[-2000:] for w in running)
        pytest.fail(f"{progress[-1:]} of {total} succeeded after {timeout}s (every 5 s: {progress[::25]})\n{tails}")
    for worker in running:
        assert worker.proc.returncode is None, worker.output()


async def dispatcher_ids(running: list[Worker]) -> list[str]:
    """Each worker's dispatcher id (the lease owner it writes), from its start-up log line."""

    def found() -> list[str] | None:
        ids = [STARTED.search(w.output()) for w in running]
        return [m.group(1) for m in ids if m] if all(ids) else None

    return list(await wait_until(found, timeout=20))


def delivered_count(worker: Worker) -> int:
    match = STOPPED.search(worker.output())
    assert match is not None, worker.output()
    return int(match.group(2))


# --- three workers, one backlog -------------------------------------------------------------------

HOOKS = 8
EVENTS_PER_HOOK = 1250
PER_ENDPOINT = 8


async def test_three_workers_share_a_postgres_backlog(
    receiver_factory: ReceiverFactory, postgres_url: str, tmp_path: Path
) -> None:
    endpoints = [Endpoint(latency=0.02) for _ in range(HOOKS)]
    receivers = [await receiver_factory(responder=endpoint) for endpoint in endpoints]
    total = HOOKS * EVENTS_PER_HOOK
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        for receiver in receivers:
            await hub.service.create_webhook(receiver.url, [EVENT])
        ids = await publish_backlog(hub, EVENTS_PER_HOOK, webhooks=HOOKS)
        assert await delivery_states(hub) == Counter({"pending": total})

        # Each worker may send 32 at once and the cluster 64 (8 endpoints x 8): no worker can take
        # every slot, and every endpoint always has more work waiting than its limit allows. A long
        # timeout and lease: on a busy machine a slow answer must not turn into a retry.
        env = worker_env(
            postgres_url,
            WEBHOOK_MCP_LEASE_SECONDS="30",
            WEBHOOK_MCP_DELIVERY_TIMEOUT="10",
            WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(PER_ENDPOINT),
        )
        async with workers(tmp_path, env, 3) as trio:
            await until_all_succeeded(hub, total, trio, timeout=90)
            codes = [await terminate(w) for w in trio]
            assert codes == [0, 0, 0], [w.output() for w in trio]

        expected = Counter(ids)
        for n, endpoint in enumerate(endpoints):
            assert Counter(endpoint.ids) == expected, f"receiver {n} must get every event exactly once"
            assert endpoint.peak <= PER_ENDPOINT, f"receiver {n} had {endpoint.peak} requests open at once"
        assert max(e.peak for e in endpoints) > PER_ENDPOINT // 2, "the limit was never approached: no real load"

        shares = [delivered_count(w) for w in trio]
        assert sum(shares) == total, shares
        assert all(share >= total // 10 for share in shares), f"every worker should do a real share: {shares}"
        for worker in trio:
            assert "Traceback" not in worker.output()

        # Claimed once, recorded once: no lease ran out and no result was written twice.
        d, a = deliveries.c, delivery_attempts.c
        assert await hub.store.scalar(select(func.count()).select_from(deliveries).where(d.attempts != 1)) == 0
        assert await hub.store.scalar(select(func.count()).select_from(delivery_attempts).where(a.success)) == total
        assert await leased_count(hub) == 0


# --- a worker killed mid-backlog --------------------------------------------------------------------

# Long, as by default: a dead worker's leases must end when it dies, not when they run out.
LEASE = 60.0
TAKE_OVER_WITHIN = 3.0
DOOMED = "webhook-mcp-doomed-worker"


async def test_worker_killed_on_postgres_loses_nothing(
    receiver_factory: ReceiverFactory, postgres_url: str, tmp_path: Path
) -> None:
    log = IdLog()
    receiver = await receiver_factory(responder=log)
    total = 4000
    d, a = deliveries.c, delivery_attempts.c
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        ids = await publish_backlog(hub, total)
        # The endpoint's limit is twice what one worker may send, so both workers always hold some
        # of its slots (with equal limits whoever holds them all can keep them: see the README).
        env = worker_env(
            postgres_url,
            WEBHOOK_MCP_LEASE_SECONDS=str(LEASE),
            WEBHOOK_MCP_DELIVERY_TIMEOUT="2",
            WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(2 * MAX_CONCURRENCY),
        )

        # The doomed worker's connections are named, to see when its last statements have run.
        doomed_env = {**env, "WEBHOOK_MCP_DATABASE_URL": f"{postgres_url}?application_name={DOOMED}"}
        async with workers(tmp_path, [doomed_env, env], 2) as (doomed, survivor):
            doomed_id, survivor_id = await dispatcher_ids([doomed, survivor])

            async def doomed_busy_mid_backlog() -> bool:
                if doomed.proc.returncode is not None:
                    return True
                if log.unique < total // 10:
                    return False
                held = await hub.store.scalar(
                    select(func.count()).select_from(deliveries).where(d.lease_owner == doomed_id)
                )
                return held >= MAX_CONCURRENCY // 4

            async def doomed_statements_done() -> bool:
                # A statement stuck sending rows to the frozen worker ("ClientWrite"), or a pipeline
                # waiting for the rest of what the frozen worker was sending ("ClientRead"), can go no
                # further: its transaction has committed (its leases are counted) or dies with it.
                states = text("SELECT state, wait_event FROM pg_stat_activity WHERE application_name = :name")
                found = list(await hub.store.fetch_all(states.bindparams(name=DOOMED)))
                assert found, "the doomed worker's connections should carry its application_name"
                return all(row.state != "active" or row.wait_event in ("ClientWrite", "ClientRead") for row in found)

            # Frozen first, so the leases it holds when it dies are known: a write it had already
            # sent (it may record everything it held) lands before the count, never after.
            orphaned: dict[str, float] = {}
            for _ in range(5):
                await wait_until(doomed_busy_mid_backlog, timeout=30, interval=0.02)
                assert doomed.proc.returncode is None, doomed.output()
                doomed.proc.send_signal(signal.SIGSTOP)
                await wait_until(doomed_statements_done, timeout=10, interval=0.01)
                # What the worker claimed and did not record, and when each lease ends.
                orphaned = {
                    row.event_id: row.next_attempt_at
                    for row in await hub.store.fetch_all(
                        select(d.event_id, d.next_attempt_at).where(d.state == "pending", d.lease_owner == doomed_id)
                    )
                }
                if orphaned:
                    break
                doomed.proc.send_signal(signal.SIGCONT)  # it had just recorded all it held: again
            assert orphaned, "the kill should land while the worker holds leases"
            doomed.proc.send_signal(signal.SIGKILL)
            assert await doomed.proc.wait() == -signal.SIGKILL
            killed_at = time.time()
            received_before = Counter(log.ids)
            assert len(received_before) < total, "the kill should land mid-backlog"

            await until_all_succeeded(hub, total, [survivor], timeout=45)
            assert await leased_count(hub) == 0

            assert set(log.ids) == set(ids), "every event must reach the receiver"
            duplicates = log.duplicates()
            assert set(duplicates) <= orphaned.keys() & received_before.keys(), (
                "only deliveries the killed worker had in flight or unrecorded may be sent again"
            )
            assert all(n == 2 for n in duplicates.values()), "the survivor itself must not send twice"

            # The survivor took over exactly the orphaned deliveries, as soon as the worker died (its
            # pause before that was no death: nothing was taken from it while it was stopped).
            retaken = await hub.store.fetch_all(select(d.event_id).where(d.attempts > 1))
            assert {row.event_id for row in retaken} == orphaned.keys()
            attempts = await hub.store.fetch_all(
                select(a.event_id, a.attempt_number, a.created_at, a.success).where(a.event_id.in_(list(orphaned)))
            )
            assert len(attempts) == len(orphaned), "one recorded attempt per orphaned delivery"
            for row in attempts:
                assert row.success and row.attempt_number == 2
                assert row.created_at < killed_at + TAKE_OVER_WITHIN < orphaned[row.event_id], "not taken over at once"
            assert await hub.store.scalar(select(func.count()).select_from(delivery_attempts)) == total

            assert await terminate(survivor) == 0, survivor.output()
        assert "Traceback" not in survivor.output()
        assert delivered_count(survivor) > 0
        assert survivor_id != doomed_id


# --- a PostgreSQL restart under the workers ------------------------------------------------------


def _postgres_bin() -> Path | None:
    """The newest installed server's bin directory (Debian layout), if any."""
    found = [
        p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()
    ]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateCluster:
    """A throwaway PostgreSQL server of this test's own, so it can be stopped and started at will
    without touching the server every other test (and session) shares."""

    bin: Path
    root: Path
    run_as: list[str]
    port: int = field(default_factory=_free_port)
    running: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self.run_as, *args], cwd=self.root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            server_log = self.root / "server.log"
            tail = server_log.read_text(errors="replace")[-2000:] if server_log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}\n{tail}")

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def start_now(self) -> None:
        log = str(self.root / "server.log")
        self._run(str(self.bin / "pg_ctl"), "start", "-D", str(self.data), "-l", log, "-w", "-t", "30")
        self.running = True

    def stop_now(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")
        self.running = False

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.start_now)

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self.stop_now)


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A running private cluster; always stopped and removed afterwards."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as the postgres user")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run a PostgreSQL server as")
        run_as = [runuser, "-u", "postgres", "--"]
    # Not under tmp_path: pytest's base temp directory is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="webhook-mcp-pg-"))
    cluster = PrivateCluster(bin_dir, root, run_as)
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster.init()
        cluster.start_now()
        yield cluster
    finally:
        try:
            if cluster.running or (cluster.data / "postmaster.pid").exists():
                cluster.stop_now(mode="immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


async def test_workers_survive_a_postgres_restart(
    receiver_factory: ReceiverFactory, private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    log = IdLog()
    receiver = await receiver_factory(responder=log)
    total = 4000
    url = private_postgres.url
    d, a = deliveries.c, delivery_attempts.c
    async with Hub.open(make_settings(url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        ids = await publish_backlog(hub, total)
        env = worker_env(
            url,
            WEBHOOK_MCP_LEASE_SECONDS=str(LEASE),
            WEBHOOK_MCP_DELIVERY_TIMEOUT="2",
            WEBHOOK_MCP_PER_ENDPOINT_CONCURRENCY=str(2 * MAX_CONCURRENCY),  # both hold slots: see the kill test
        )

        async with workers(tmp_path, env, 2) as pair:
            owners = set(await dispatcher_ids(pair))
            seen: set[str] = set()

            async def both_working_mid_backlog() -> bool:
                if any(w.proc.returncode is not None for w in pair):
                    return True
                rows = await hub.store.fetch_all(select(d.lease_owner).where(d.lease_owner.is_not(None)).distinct())
                seen.update(row.lease_owner for row in rows)
                return seen >= owners and log.unique >= total // 10

            await wait_until(both_working_mid_backlog, timeout=30, interval=0.02)
            assert all(w.proc.returncode is None for w in pair), [w.output() for w in pair]
            await private_postgres.stop()
            received_before = log.unique
            assert received_before < total, "the restart should land mid-backlog"
            # Down until each worker has run into it, so the recovery below is really exercised.
            await wait_until(lambda: all(any(s in w.output() for s in DATABASE_TROUBLE) for w in pair), timeout=15)
            await private_postgres.start()

            await until_all_succeeded(hub, total, pair, timeout=60)
            # A worker whose claims failed claims successfully again, without help.
            await wait_until(
                lambda: all(CLAIMS_FAILED not in w.output() or CLAIMS_WORK in w.output() for w in pair), timeout=35
            )
            assert await delivery_states(hub) == Counter({"succeeded": total})
            assert await leased_count(hub) == 0
            assert set(log.ids) == set(ids), "every event must reach the receiver"

            # No result lost: every succeeded delivery has its successful attempt in the log.
            unlogged = (
                select(func.count())
                .select_from(deliveries)
                .where(
                    d.state == "succeeded",
                    ~exists().where(and_(a.delivery_id == d.id, a.success)),
                )
            )
            assert await hub.store.scalar(unlogged) == 0

            codes = [await terminate(w) for w in pair]
            assert codes == [0, 0], [w.output() for w in pair]
        assert sum(delivered_count(w) for w in pair) >= total
        for worker in pair:
            assert "Traceback" not in worker.output()
