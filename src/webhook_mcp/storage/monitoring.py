"""What health checks and metrics read: the schema revision, and the queue's size in one statement."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, ScalarSelect, func, not_, select, text

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.schema import deliveries, webhooks

# How a webhook disabled by request is marked (service.webhooks.set_enabled); anything else is
# a webhook the dispatcher disabled (410 Gone, or failing for too long).
MANUAL_DISABLE_PREFIX = "disabled by request"


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    pending: int
    held: int
    dead: int
    leased: int  # pending deliveries some worker holds a live lease on (being sent or queued)
    oldest_due_age: float  # seconds the longest-waiting due delivery has waited; 0 when none
    webhooks_enabled: int
    webhooks_disabled: int
    webhooks_auto_disabled: int


class MonitoringQueries(StoreBase):
    async def schema_revision(self) -> str | None:
        """The migration the database is at; raises if the database does not answer."""
        return await self._read(lambda conn: conn.scalar(text("SELECT version_num FROM alembic_version")))

    async def queue_snapshot(self, now: float) -> QueueSnapshot:
        """Counts from the queue's partial indexes and the small webhooks table, in one statement
        (a tenant's view counts its own webhooks' only)."""

        def count(*conditions: ColumnElement[bool]) -> ScalarSelect[int]:
            mine = self._hooks_in_scope(deliveries.c.webhook_id)
            return select(func.count()).select_from(deliveries).where(*conditions, mine).scalar_subquery()

        pending = deliveries.c.state == "pending"
        manual = func.coalesce(webhooks.c.disabled_reason, "").startswith(MANUAL_DISABLE_PREFIX)

        def hooks(*conditions: ColumnElement[bool]) -> ScalarSelect[int]:
            mine = self._in_scope(webhooks.c.tenant_id)
            return select(func.count()).select_from(webhooks).where(*conditions, mine).scalar_subquery()

        query = select(
            count(pending),
            count(deliveries.c.state == "held"),
            count(deliveries.c.state == "failed"),
            count(pending, deliveries.c.lease_owner.is_not(None), deliveries.c.next_attempt_at > now),
            select(func.min(deliveries.c.next_attempt_at))
            .where(pending, deliveries.c.next_attempt_at <= now, self._hooks_in_scope(deliveries.c.webhook_id))
            .scalar_subquery(),
            hooks(webhooks.c.enabled),
            hooks(not_(webhooks.c.enabled), manual),
            hooks(not_(webhooks.c.enabled), not_(manual)),
        )

        def work(conn: Connection) -> QueueSnapshot:
            row = conn.execute(query).one()
            oldest = row[4]
            return QueueSnapshot(
                pending=row[0],
                held=row[1],
                dead=row[2],
                leased=row[3],
                oldest_due_age=max(0.0, now - oldest) if oldest is not None else 0.0,
                webhooks_enabled=row[5],
                webhooks_disabled=row[6],
                webhooks_auto_disabled=row[7],
            )

        return await self._read(work)
