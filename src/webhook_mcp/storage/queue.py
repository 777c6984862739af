"""The delivery queue: claims with leases, hand-backs, redelivery of dead deliveries, wake-ups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, select, update

from webhook_mcp.storage.base import MAX_ROW_ID, MAX_WEBHOOK_ID, WORK_CHANNEL, StoreBase
from webhook_mcp.storage.claim import Claim, ClaimRequest
from webhook_mcp.storage.records import (
    ClaimedDelivery,
)
from webhook_mcp.storage.schema import (
    deliveries,
    webhooks,
)

logger = logging.getLogger(__name__)


MAX_RECONNECT_DELAY = 30.0


class QueueQueries(StoreBase):
    async def claim(
        self,
        owner: str,
        limit: int,
        now: float,
        lease: float,
        per_endpoint: int | None = None,
        *,
        in_flight: Mapping[int, int] | None = None,
        ahead: int = 0,
        ahead_limit: int = 0,
        look_past_full: bool = True,
        blocked: list[int] | None = None,
        others: dict[int, int] | None = None,
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` due deliveries atomically; a claim is a lease that pushes the
        delivery's due time forward, so a crashed worker's deliveries come due again by themselves.

        No webhook ever has more than ``per_endpoint`` deliveries in flight across all workers:
        other workers' leases are counted in the database while holding the webhook's claim lock
        (PostgreSQL: an advisory lock, taken with try so claimers never wait on each other, and
        kept only for the webhooks this claim needs; SQLite: the single writer), this worker's own
        from ``in_flight`` (its exact count of deliveries queued or being sent, which unlike its
        leases drops the moment a send ends, before the result is written). On PostgreSQL the
        claim is two round trips: the scan, which takes the locks, then one statement that counts,
        picks and leases (``QueueSql.take``).

        ``ahead`` lets the worker lease up to that many more of a webhook than it may send at once
        (and no more than it may send), to queue behind its own sends, so that a claim's round
        trips are not in the path of the endpoint's next requests; ``ahead_limit`` of them in all,
        besides the ``limit`` to send. They are taken only from webhooks whose room this claim
        filled, and other workers count them as in flight. The worker must then send no more
        than ``per_endpoint`` less the other workers' leases, which this claim writes to
        ``others`` for every webhook it counted: that holds the limit across the cluster, since
        leases only grow by claims, each of which counts all the others.

        Webhooks with due work this claim could not take because another worker was claiming from
        them at that moment, or holds their slots, are added to ``blocked``: worth another try
        soon, or a worker that claims only when it polls would rarely get its share.

        The claim looks at a bounded window of the oldest due rows; when that window is all
        endpoints at their limit, ``look_past_full`` allows a second look past them, which reads
        the next due rows of each other webhook from its own queue: its cost grows with the
        number of webhooks, not with the backlog of the full ones (see ``storage.claim``)."""
        request = ClaimRequest(
            owner, limit, now, lease, per_endpoint, in_flight or {}, ahead, ahead_limit, look_past_full
        )
        return await self._hot(Claim(self._queue_sql, request, blocked, others).run)

    async def release(self, delivery_ids: Sequence[int], now: float, owner: str | None = None) -> None:
        """Hand back claimed deliveries untouched (the attempt was never made): due at once, and
        ahead of work that became due after them (a claim takes the earliest due first), so the
        worker that takes them over sends them next; idle workers are woken. With ``owner``, only
        those still leased to it (another worker may have taken them after a take-over)."""
        if not delivery_ids:
            return
        d = deliveries.c
        query = update(deliveries).where(d.id.in_(delivery_ids), self._hooks_in_scope(d.webhook_id))
        if owner is not None:
            query = query.where(d.lease_owner == owner)

        def work(conn: Connection) -> Any:
            due = func.min(d.created_at, now) if not self.is_postgres else func.least(d.created_at, now)
            conn.execute(query.values(next_attempt_at=due, lease_owner=None, attempts=d.attempts - 1))
            self._announce_work(conn)

        return await self._write(work)

    async def listen_for_work(self, on_work: Callable[[], None], retry_delay: float = 1.0) -> None:
        """Call ``on_work`` whenever any process commits new due work (PostgreSQL LISTEN/NOTIFY),
        and once after each (re)connection, since notifications sent while away are lost. Runs
        until cancelled and outlives database restarts; SQLite has no notifications (returns)."""
        if not self.is_postgres:
            return
        import psycopg  # only on PostgreSQL: a SQLite server never pays for the driver

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = retry_delay
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    delay = retry_delay
                    on_work()
                    async for _notice in conn.notifies():
                        on_work()
            except psycopg.Error as exc:
                logger.warning("listening for new work failed (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    # -- redelivery and upkeep ------------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Row[Any] | None:
        if not 0 < delivery_id <= MAX_ROW_ID:
            return None

        def work(conn: Connection) -> Any:
            d = deliveries.c
            return conn.execute(
                select(deliveries).where(d.id == delivery_id, self._hooks_in_scope(d.webhook_id))
            ).one_or_none()

        return await self._read(work)

    async def requeue(
        self, webhook_id: int, now: float, delivery_id: int | None = None, since: float | None = None
    ) -> int:
        """Revive dead deliveries with a fresh attempt budget; held when the webhook is disabled.
        None revived (0) when the webhook is not this view's tenant's."""
        if not 0 < webhook_id <= MAX_WEBHOOK_ID or (delivery_id is not None and not 0 < delivery_id <= MAX_ROW_ID):
            return 0

        def work(conn: Connection) -> Any:
            mine = select(webhooks.c.enabled).where(webhooks.c.id == webhook_id, self._in_scope(webhooks.c.tenant_id))
            hook = conn.execute(mine).one_or_none()
            if hook is None:
                return 0
            enabled = hook.enabled
            query = update(deliveries).where(deliveries.c.webhook_id == webhook_id, deliveries.c.state == "failed")
            if delivery_id is not None:
                query = query.where(deliveries.c.id == delivery_id)
            if since is not None:
                query = query.where(deliveries.c.created_at >= since)
            result = conn.execute(
                query.values(
                    state="pending" if enabled else "held",
                    attempts=0,
                    next_attempt_at=now,
                    completed_at=None,
                    lease_owner=None,
                    updated_at=now,
                )
            )
            if result.rowcount and enabled:
                self._announce_work(conn)
            return int(result.rowcount)

        return await self._write(work)
