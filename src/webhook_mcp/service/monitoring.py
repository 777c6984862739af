"""Health, readiness and the metrics exposition of one running hub. Readiness asks the database
one tiny question (its schema revision) and looks at the dispatcher's heartbeat, so it is cheap
enough to call every second; the queue's gauges come from one statement, cached briefly, so a
scrape costs at most one cheap query."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook_mcp.core.metrics import PREFIX
from webhook_mcp.delivery.state import MAX_DB_RETRY_DELAY, brief
from webhook_mcp.service.hub import Hub
from webhook_mcp.storage import engine as database
from webhook_mcp.storage.monitoring import QueueSnapshot

DATABASE_TIMEOUT = 2.0
QUEUE_CACHE_SECONDS = 5.0


@functools.cache
def head_revision() -> str | None:
    """The newest migration this code knows; read from the migration scripts once per process."""
    return database.head_revision()


def heartbeat_limit(hub: Hub) -> float:
    """How long the claim loop may go without a turn: it turns at least every poll interval when
    idle, every delivery timeout when every slot is busy, every backoff while the database is away."""
    cfg = hub.settings
    return 2 * max(cfg.poll_interval, cfg.delivery_timeout, MAX_DB_RETRY_DELAY)


class Monitor:
    def __init__(self, hub: Hub, cache_seconds: float = QUEUE_CACHE_SECONDS) -> None:
        self.hub = hub
        self.cache_seconds = cache_seconds
        self.draining = False  # set when the process is stopping: no longer ready for new work
        self._snapshot: QueueSnapshot | None = None
        self._snapshot_at = -float("inf")
        self._snapshot_lock = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HubCollector(self))

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this process can do its work, and what is wrong when not, check by check."""
        checks: dict[str, Any] = {"database": await self._database_check()}
        dispatcher = self.hub.dispatcher
        if dispatcher is not None:
            checks["dispatcher"] = self._dispatcher_check()
        problems = [check["problem"] for check in checks.values() if "problem" in check]
        if self.draining:
            problems.insert(0, "the process is shutting down")
        body = {"status": "not ready" if problems else "ready", "problems": problems, "checks": checks}
        return not problems, body

    async def _database_check(self) -> dict[str, Any]:
        head = head_revision()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                revision = await self.hub.store.schema_revision()
        except TimeoutError:
            return {"ok": False, "problem": f"the database did not answer within {DATABASE_TIMEOUT:g} s"}
        except Exception as exc:
            return {"ok": False, "problem": f"the database does not answer: {brief(exc)}"}
        result: dict[str, Any] = {"ok": True, "schema": revision, "head": head}
        result["seconds"] = round(time.perf_counter() - started, 4)
        if revision != head:
            result["ok"] = False
            result["problem"] = (
                f"the database schema is at revision {revision}, not {head}: run `webhook-mcp migrate` "
                "(a process of a newer or older release may have migrated it)"
            )
        return result

    def _dispatcher_check(self) -> dict[str, Any]:
        dispatcher, task = self.hub.dispatcher, self.hub.dispatcher_task
        assert dispatcher is not None
        if task is None or task.done():
            error = task.exception() if task is not None and not task.cancelled() else None
            why = f" (it failed: {brief(error)})" if error is not None else ""
            return {"ok": False, "problem": f"the dispatcher is not running{why}"}
        age = time.monotonic() - dispatcher.heartbeat
        result: dict[str, Any] = {"ok": True, "heartbeat_age_seconds": round(age, 3), "in_flight": dispatcher.in_flight}
        if dispatcher.stopping:
            result.update(ok=False, problem="the dispatcher is stopping")
        elif age > heartbeat_limit(self.hub):
            result.update(ok=False, problem=f"the dispatcher's claim loop has not turned for {age:.0f} s")
        return result

    async def refresh_queue(self) -> None:
        """Read the queue's counts unless the last read is recent; a failure leaves them unknown."""
        async with self._snapshot_lock:
            if time.monotonic() - self._snapshot_at < self.cache_seconds:
                return
            try:
                async with asyncio.timeout(DATABASE_TIMEOUT):
                    self._snapshot = await self.hub.store.queue_snapshot(time.time())
            except Exception:
                self._snapshot = None
            self._snapshot_at = time.monotonic()

    async def exposition(self) -> bytes:
        """This process's counters and the queue's gauges, in the Prometheus text format."""
        await self.refresh_queue()
        return generate_latest(REGISTRY) + generate_latest(self.registry)


class _HubCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.monitor._snapshot
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_stats_up", "1 when the last read of the queue's counts succeeded.", snapshot is not None
        )
        dispatcher = self.monitor.hub.dispatcher
        yield GaugeMetricFamily(
            f"{PREFIX}_deliveries_in_flight",
            "Deliveries this process is sending now.",
            dispatcher.in_flight if dispatcher is not None else 0,
        )
        if snapshot is None:
            return
        states = GaugeMetricFamily(f"{PREFIX}_deliveries", "Deliveries by state (whole database).", labels=["state"])
        for state, value in (("pending", snapshot.pending), ("held", snapshot.held), ("dead", snapshot.dead)):
            states.add_metric([state], value)
        yield states
        yield GaugeMetricFamily(
            f"{PREFIX}_deliveries_leased",
            "Pending deliveries some worker holds a lease on (sending or queued to send).",
            snapshot.leased,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_due_delivery_age_seconds",
            "How long the longest-waiting due delivery has waited (0 when none is due).",
            snapshot.oldest_due_age,
        )
        hooks = GaugeMetricFamily(f"{PREFIX}_webhooks", "Webhooks by status.", labels=["status"])
        hooks.add_metric(["enabled"], snapshot.webhooks_enabled)
        hooks.add_metric(["disabled"], snapshot.webhooks_disabled)
        hooks.add_metric(["auto_disabled"], snapshot.webhooks_auto_disabled)
        yield hooks
