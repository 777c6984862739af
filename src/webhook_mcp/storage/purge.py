"""Deleting a tenant: first marked deleted in one transaction (its name and tokens stop working,
its webhooks are disabled so no worker claims their deliveries), then its rows leave in small
batches, one short transaction each, so delivery for every other tenant goes on meanwhile."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.pipeline import driver_rows
from webhook_mcp.storage.schema import (
    attempt_rollups,
    deliveries,
    delivery_attempts,
    delivery_counts,
    events,
    tenant_tokens,
    tenants,
    webhooks,
)

DELETED_REASON = "its tenant was deleted"
_HOLD_CHUNK = 500


class PurgeQueries(StoreBase):
    async def mark_tenant_deleted(self, tenant_id: int, now: float) -> Row[Any] | None:
        """The tenant, now marked deleted, its webhooks disabled (waiting deliveries held) and its
        tokens revoked, all at once; None if there is no such live tenant."""

        def work(conn: Connection) -> Any:
            live = (tenants.c.id == tenant_id) & tenants.c.deleted_at.is_(None)
            row = conn.execute(update(tenants).where(live).values(deleted_at=now).returning(*tenants.c)).one_or_none()
            if row is None:
                return None
            w = webhooks.c
            hook_ids = [
                hook_id
                for (hook_id,) in conn.execute(
                    update(webhooks)
                    .where(w.tenant_id == tenant_id)
                    .values(enabled=False, disabled_reason=DELETED_REASON, disabled_at=now, updated_at=now)
                    .returning(w.id)
                )
            ]
            for start in range(0, len(hook_ids), _HOLD_CHUNK):
                self._hold(conn, hook_ids[start : start + _HOLD_CHUNK], now)
            conn.execute(delete(tenant_tokens).where(tenant_tokens.c.tenant_id == tenant_id))
            return row

        return await self._write(work)

    def _hold(self, conn: Connection, hook_ids: list[int], now: float) -> None:
        driver_rows(conn, self._queue_sql.hold_waiting, {"ids": self._queue_sql.ids(hook_ids), "now": now})

    async def deleted_tenants(self) -> list[int]:
        """Tenants marked deleted whose rows are not all gone yet."""
        query = select(tenants.c.id).where(tenants.c.deleted_at.is_not(None)).order_by(tenants.c.id)
        return await self._read(lambda conn: list(conn.scalars(query).all()))

    async def purge_tenant_step(self, tenant_id: int, batch: int) -> int:
        """Remove up to ``batch`` rows of a tenant marked deleted, in one transaction: attempt logs,
        deliveries and statistics webhook by webhook, then the webhooks, then its events, finally
        the tenant itself. Returns how many rows went; 0 once the tenant is gone (or was never
        marked deleted)."""

        def work(conn: Connection) -> int:
            marked = select(tenants.c.id).where(tenants.c.id == tenant_id, tenants.c.deleted_at.is_not(None))
            if conn.scalar(marked) is None:
                return 0
            hook_id = conn.scalar(select(webhooks.c.id).where(webhooks.c.tenant_id == tenant_id).limit(1))
            if hook_id is not None:
                return self._purge_webhook(conn, hook_id, batch)
            event_ids = select(events.c.id).where(events.c.tenant_id == tenant_id).limit(batch).scalar_subquery()
            removed = conn.execute(delete(events).where(events.c.id.in_(event_ids))).rowcount
            if removed:
                return int(removed)
            conn.execute(delete(tenants).where(tenants.c.id == tenant_id))
            return 1

        return await self._write(work)

    def _purge_webhook(self, conn: Connection, hook_id: int, batch: int) -> int:
        # Locked first, as result writers lock a webhook before its deliveries (no deadlock with them).
        conn.execute(select(webhooks.c.id).where(webhooks.c.id == hook_id).with_for_update()).one_or_none()
        a, d = delivery_attempts.c, deliveries.c
        attempt_ids = select(a.id).where(a.webhook_id == hook_id).limit(batch).scalar_subquery()
        removed = conn.execute(delete(delivery_attempts).where(a.id.in_(attempt_ids))).rowcount
        if removed:
            return int(removed)
        delivery_ids = select(d.id).where(d.webhook_id == hook_id).limit(batch).scalar_subquery()
        removed = conn.execute(delete(deliveries).where(d.id.in_(delivery_ids))).rowcount
        if removed:
            return int(removed)
        conn.execute(delete(attempt_rollups).where(attempt_rollups.c.webhook_id == hook_id))
        conn.execute(delete(delivery_counts).where(delivery_counts.c.webhook_id == hook_id))
        conn.execute(delete(webhooks).where(webhooks.c.id == hook_id))
        return 1
