"""Webhooks and their secrets: registration, changes, enable/disable (which holds or resumes
waiting deliveries in the same transaction), deletion, rotation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from webhook_mcp.storage.base import MAX_WEBHOOK_ID, StoreBase
from webhook_mcp.storage.pipeline import driver_rows
from webhook_mcp.storage.schema import (
    attempt_rollups,
    deliveries,
    delivery_attempts,
    webhooks,
)


class WebhookQueries(StoreBase):
    async def insert_webhook(self, values: Mapping[str, Any]) -> Row[Any]:
        """A view for one tenant registers the webhook for that tenant, whatever ``values`` say."""
        if self.tenant_id is not None:
            values = {**values, "tenant_id": self.tenant_id}

        def work(conn: Connection) -> Any:
            row = (conn.execute(insert(webhooks).values(**values).returning(*webhooks.c))).one()
            return row

        return await self._write(work)

    async def get_webhook(self, webhook_id: int) -> Row[Any] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            query = select(webhooks).where(webhooks.c.id == webhook_id, self._in_scope(webhooks.c.tenant_id))
            return (conn.execute(query)).one_or_none()

        return await self._read(work)

    async def list_webhooks(self) -> list[Row[Any]]:
        def work(conn: Connection) -> Any:
            query = select(webhooks).where(self._in_scope(webhooks.c.tenant_id)).order_by(webhooks.c.id)
            return list((conn.execute(query)).all())

        return await self._read(work)

    async def update_webhook(self, webhook_id: int, values: Mapping[str, Any]) -> Row[Any] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            return (
                conn.execute(
                    update(webhooks)
                    .where(webhooks.c.id == webhook_id, self._in_scope(webhooks.c.tenant_id))
                    .values(**values)
                    .returning(*webhooks.c)
                )
            ).one_or_none()

        return await self._write(work)

    async def set_enabled(self, webhook_id: int, enabled: bool, reason: str | None, now: float) -> Row[Any] | None:
        """Flip the flag and move the webhook's waiting deliveries between pending and held in the
        same transaction, so a dispatcher never sees a disabled webhook with pending work."""
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            row = (
                conn.execute(
                    update(webhooks)
                    .where(webhooks.c.id == webhook_id, self._in_scope(webhooks.c.tenant_id))
                    .values(
                        enabled=enabled,
                        disabled_reason=None if enabled else reason,
                        disabled_at=None if enabled else now,
                        updated_at=now,
                        **({"consecutive_failures": 0, "failing_since": None} if enabled else {}),
                    )
                    .returning(*webhooks.c)
                )
            ).one_or_none()
            if row is not None:
                self._move_waiting(conn, [webhook_id], enabled, now)
                if enabled:
                    self._announce_work(conn)
            return row

        return await self._write(work)

    def _move_waiting(self, conn: Connection, webhook_ids: Sequence[int], enabled: bool, now: float) -> None:
        """Deliveries in flight (leased) are left alone: recording their result holds them if the
        webhook is still disabled, and nothing is sent twice by a quick disable and enable."""
        if not enabled:
            driver_rows(conn, self._queue_sql.hold_waiting, {"ids": self._queue_sql.ids(webhook_ids), "now": now})
            return
        d = deliveries.c
        query = update(deliveries).where(d.webhook_id.in_(webhook_ids), d.state == "held")
        conn.execute(query.values(updated_at=now, state="pending", next_attempt_at=now))

    async def delete_webhook(self, webhook_id: int) -> tuple[Row[Any], int, int] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            # Locked first, as result writers lock it before its deliveries (no deadlock with them).
            mine = select(webhooks).where(webhooks.c.id == webhook_id, self._in_scope(webhooks.c.tenant_id))
            row = conn.execute(mine.with_for_update()).one_or_none()
            if row is None:
                return None
            attempts = conn.execute(delete(delivery_attempts).where(delivery_attempts.c.webhook_id == webhook_id))
            removed = conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
            conn.execute(delete(attempt_rollups).where(attempt_rollups.c.webhook_id == webhook_id))
            conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
            return row, removed.rowcount, attempts.rowcount

        return await self._write(work)

    async def rotate_secret(
        self, webhook_id: int, secret: str, previous_expires_at: float | None, now: float
    ) -> tuple[Row[Any], float | None] | None:
        """Make ``secret`` current; the replaced one becomes the previous secret until
        ``previous_expires_at`` (None: dropped at once). The UPDATE takes the replaced secret from
        the row itself, so concurrent rotations never lose one. Returns the row and the expiry of
        the previous secret it replaced."""
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None
        w = webhooks.c

        def work(conn: Connection) -> Any:
            before = conn.execute(
                select(w.previous_secret_expires_at)
                .where(w.id == webhook_id, self._in_scope(w.tenant_id))
                .with_for_update()
            ).one_or_none()
            if before is None:
                return None
            row = conn.execute(
                update(webhooks)
                .where(w.id == webhook_id)
                .values(
                    secret=secret,
                    previous_secret=None if previous_expires_at is None else w.secret,
                    previous_secret_expires_at=previous_expires_at,
                    secret_rotated_at=now,
                    updated_at=now,
                )
                .returning(*webhooks.c)
            ).one()
            return row, before.previous_secret_expires_at

        return await self._write(work)

    async def forget_expired_secrets(self, now: float) -> int:
        """Drop previous secrets whose grace period is over (they no longer sign anything)."""
        w = webhooks.c

        def work(conn: Connection) -> Any:
            result = conn.execute(
                update(webhooks)
                .where(w.previous_secret_expires_at <= now, self._in_scope(w.tenant_id))
                .values(previous_secret=None, previous_secret_expires_at=None)
            )
            return int(result.rowcount)

        return await self._write(work)

    async def replace_secrets(self, changes: Sequence[Mapping[str, Any]]) -> int:
        """Store other forms of the same secrets (e.g. encrypted for plaintext): each change applies
        only while the row still holds what was read (``old_secret``, ``old_previous``), so a
        rotation in between is never undone."""
        w = webhooks.c

        def work(conn: Connection) -> Any:
            written = 0
            for change in changes:
                result = conn.execute(
                    update(webhooks)
                    .where(
                        w.id == change["id"],
                        self._in_scope(w.tenant_id),
                        w.secret == change["old_secret"],
                        w.previous_secret.is_not_distinct_from(change["old_previous"]),
                    )
                    .values(secret=change["secret"], previous_secret=change["previous"])
                )
                written += int(result.rowcount)
            return written

        return await self._write(work)
