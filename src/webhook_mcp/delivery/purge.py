"""Removing what deleted tenants left: batch after batch, each its own short transaction, giving
the event loop (and every other tenant's deliveries) a turn between batches. The retention loop
runs it in the background; ``webhook-mcp tenants delete`` runs it to the end at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from webhook_mcp.storage.store import Store

logger = logging.getLogger(__name__)

PURGE_BATCH = 500


async def purge_tenant(
    store: Store, tenant_id: int, batch: int = PURGE_BATCH, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Rows removed for a tenant marked deleted, until none is left (or ``stopping``)."""
    total = 0
    while not stopping():
        removed = await store.purge_tenant_step(tenant_id, batch)
        if not removed:
            break
        total += removed
        await asyncio.sleep(0)
    return total


async def purge_deleted_tenants(
    store: Store, batch: int = PURGE_BATCH, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Rows removed for every tenant marked deleted."""
    total = 0
    for tenant_id in await store.deleted_tenants():
        removed = await purge_tenant(store, tenant_id, batch, stopping)
        if removed:
            logger.info("removed %d row(s) of deleted tenant %d", removed, tenant_id)
        total += removed
    return total
