"""Upkeep every dispatcher runs in the background: old attempt logs, finished deliveries and the
events they were for leave the database after their retention periods, a small batch per
transaction so the queue is never locked for long; expired rotated-out secrets are forgotten, and
deleted tenants' rows removed (see ``delivery.purge``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from webhook_mcp.core import metrics
from webhook_mcp.core.settings import Settings
from webhook_mcp.delivery.purge import purge_deleted_tenants
from webhook_mcp.delivery.state import brief
from webhook_mcp.storage.store import Store

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 300.0
PRUNE_BATCH = 500
DAY = 86400.0


@dataclass
class Pruned:
    attempts: int = 0
    deliveries: int = 0
    events: int = 0


class Retention:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        batch: int = PRUNE_BATCH,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.batch = batch

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Prune now and every ``PRUNE_INTERVAL`` until cancelled; a failure is logged and retried."""
        while not stopping():
            try:
                await self.upkeep(stopping)
            except Exception as exc:
                logger.warning("pruning old rows failed (%s); trying again later", brief(exc))
            await asyncio.sleep(PRUNE_INTERVAL)

    async def upkeep(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """One pass: old rows pruned, expired secrets forgotten, deleted tenants' rows removed."""
        await self.prune(stopping)
        await self.store.forget_expired_secrets(self.clock())
        await purge_deleted_tenants(self.store, self.batch, stopping)

    async def prune(self, stopping: Callable[[], bool] = lambda: False) -> Pruned:
        """One pass over each table, batch by batch, yielding to the event loop between batches."""
        now = self.clock()
        cfg = self.settings
        pruned = Pruned()
        removed = self.batch
        while removed == self.batch and not stopping():
            removed = await self.store.prune_attempts(now - cfg.log_retention_days * DAY, self.batch)
            pruned.attempts += removed
            await asyncio.sleep(0)
        if cfg.delivery_retention_days:
            pruned.deliveries = await self._prune_deliveries(now, stopping)
            pruned.events = await self._prune_events(now, stopping)
        metrics.pruned("delivery_attempts", pruned.attempts)
        metrics.pruned("deliveries", pruned.deliveries)
        metrics.pruned("events", pruned.events)
        if pruned.attempts or pruned.deliveries or pruned.events:
            await self.store.reclaim_pruned()
            logger.info(
                "retention pruned %d attempt log rows, %d deliveries, %d events",
                pruned.attempts,
                pruned.deliveries,
                pruned.events,
            )
        return pruned

    async def _prune_deliveries(self, now: float, stopping: Callable[[], bool]) -> int:
        cfg = self.settings
        succeeded_before = now - cfg.delivery_retention_days * DAY
        dead_before = now - cfg.dead_delivery_retention_days * DAY if cfg.dead_delivery_retention_days else None
        deleted = 0
        cursor: int | None = 0
        while cursor is not None and not stopping():
            swept = await self.store.prune_deliveries(cursor, self.batch, succeeded_before, dead_before)
            deleted += swept.deleted
            cursor = swept.cursor
            await asyncio.sleep(0)
        return deleted

    async def _prune_events(self, now: float, stopping: Callable[[], bool]) -> int:
        """Events without deliveries left; one is kept while an idempotency key may still point at it."""
        cfg = self.settings
        before = now - max(cfg.delivery_retention_days * DAY, cfg.idempotency_ttl)
        deleted = 0
        cursor: tuple[float, str] | None = None
        while not stopping():
            swept = await self.store.prune_events(cursor, self.batch, before)
            deleted += swept.deleted
            cursor = swept.cursor
            if cursor is None:
                break
            await asyncio.sleep(0)
        return deleted
