"""The delivery queue: claims with leases, hand-backs, redelivery of dead deliveries, wake-ups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Row, func, select, update

from webhook_mcp.storage.base import MAX_ROW_ID, MAX_WEBHOOK_ID, WORK_CHANNEL, StoreBase
from webhook_mcp.storage.pipeline import HotTransaction
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
        endpoints at their limit, ``look_past_full`` allows one more window past them, a scan that
        can be long, so the dispatcher asks for it only now and then."""
        window = limit * 4
        ahead = 0 if per_endpoint is None else ahead
        per_hook = limit if per_endpoint is None else min(limit, per_endpoint + ahead)
        sql = self._queue_sql
        pick = sql.pick
        own = in_flight or {}
        own_ids, own_n = sql.ids(list(own)), sql.ids(list(own.values()))

        def work(tx: HotTransaction) -> Any:
            hooks: dict[int, tuple[Any, ...]] = {}
            room: dict[int, int] = {}  # with ``extra``
            extra: dict[int, int] = {}  # rows to queue ahead (SQLite)
            busy: dict[int, int] = {}
            picked: list[int] = []
            leased: list[tuple[Any, ...]] = []  # PostgreSQL: leased in the take statement
            taken_ahead = 0
            taken: set[int] = set()
            disabled: list[int] = []
            full: list[int] = []
            passes = 2 if look_past_full and per_endpoint is not None else 1
            for deeper in range(passes):
                lock = per_endpoint is not None
                if lock and sql.unlock is not None:
                    tx.after_commit(sql.unlock)
                params = {
                    "now": now,
                    "window": window,
                    "full": sql.ids(full),
                    "per_hook": per_hook,
                    "lock": lock,
                    "enough": limit - len(picked) - len(leased) + taken_ahead,
                    "own_ids": own_ids,
                    "own_n": own_n,
                    "cap": MAX_WEBHOOK_ID if per_endpoint is None else per_endpoint,
                    "ahead": ahead,
                }
                # (id, webhook_id, scanned, locked): see QueueSql.scan.
                candidates = tx.fetch(sql.scan, params)
                scanned = candidates[0][2] if candidates else 0
                if blocked is not None:
                    blocked.extend({row[1] for row in candidates if row[3] is False} - hooks.keys() - room.keys())
                mine = [(row[0], row[1]) for row in candidates if row[3] and row[0] not in taken]
                if sql.take is not None:
                    # A webhook's room is counted once per claim: a deeper pass takes only new ones.
                    mine = [row for row in mine if row[1] not in room]
                if sql.take is not None and mine:
                    # Pass 1 commits with its take unless a deeper pass may follow (now and then).
                    params |= {
                        "owner": owner,
                        "until": now + lease,
                        "limit": limit - len(leased) + taken_ahead,
                        "ahead_limit": ahead_limit - taken_ahead,
                        "ids": sql.ids([row[0] for row in mine]),
                        "id_hooks": sql.ids([row[1] for row in mine]),
                        "hooks": sql.ids(sorted({row[1] for row in mine})),
                    }
                    for row in tx.fetch(sql.take, params, last=deeper == passes - 1):
                        if row[0] is None:
                            room[row[1]], busy[row[1]] = row[10], row[11]
                        else:
                            leased.append(row)
                            taken.add(row[0])
                            taken_ahead += row[10]
                elif pick is not None and mine:
                    new_hooks = sorted({row[1] for row in mine} - hooks.keys())
                    if new_hooks:
                        statement = pick.hooks if per_endpoint is None else pick.hooks_limited
                        params = {"ids": sql.ids(new_hooks), "owner": owner, "now": now}
                        # (id, url, secret, enabled, previous_secret, previous_secret_expires_at, busy)
                        for found in tx.fetch(statement, params):
                            hook_id = found[0]
                            hooks[hook_id], busy[hook_id] = found, found[6]
                            if per_endpoint is None:
                                room[hook_id], extra[hook_id] = limit, 0
                            else:
                                sendable = per_endpoint - found[6]
                                extra[hook_id] = min(ahead, max(0, sendable))
                                room[hook_id] = sendable + extra[hook_id] - own.get(hook_id, 0)
                    # (A webhook missing from ``hooks`` was deleted meanwhile.) A lease that outlived
                    # its worker can come due after the webhook was disabled.
                    disabled += [row[0] for row in mine if row[1] in hooks and not hooks[row[1]][3]]
                    # Rows to send first, then (``ahead``) rows to queue: the same order as ``take``.
                    for delivery_id, hook_id in mine:
                        hook = hooks.get(hook_id)
                        if hook and hook[3] and room[hook_id] > extra[hook_id] and len(picked) - taken_ahead < limit:
                            room[hook_id] -= 1
                            picked.append(delivery_id)
                            taken.add(delivery_id)
                    for delivery_id, hook_id in mine if taken_ahead < ahead_limit else ():
                        hook = hooks.get(hook_id)
                        if (
                            hook
                            and hook[3]
                            and delivery_id not in taken
                            and 0 < room[hook_id] <= extra[hook_id]
                            and taken_ahead < ahead_limit
                        ):
                            room[hook_id] -= 1
                            picked.append(delivery_id)
                            taken.add(delivery_id)
                            taken_ahead += 1
                full = [hook_id for hook_id, left in room.items() if left <= 0]
                if blocked is not None:
                    blocked.extend(hook_id for hook_id in full if busy[hook_id] > 0)
                if per_endpoint is not None:
                    # Webhooks whose every slot this worker fills itself were not even locked.
                    full += {row[1] for row in candidates if own.get(row[1], 0) >= per_endpoint + ahead} - room.keys()
                if len(picked) + len(leased) - taken_ahead >= limit or scanned < window or not full:
                    break
            if others is not None:
                others.update(busy)
            if pick is not None and disabled:
                tx.send(pick.hold, {"ids": sql.ids(disabled), "now": now})
            if pick is not None and picked:
                until = now + lease
                claimed = tx.fetch(pick.lease, {"ids": sql.ids(picked), "now": now, "until": until, "owner": owner})
                event_ids = sql.ids(list({row[2] for row in claimed}))
                bodies = {row[0]: row[1:] for row in tx.fetch(pick.bodies, {"ids": event_ids}, last=True)}
                for delivery_id, hook_id, event_id, attempts in claimed:
                    _id, url, secret, _enabled, previous_secret, previous_expires, _busy = hooks[hook_id]
                    event = (event_id, attempts, *bodies[event_id])
                    leased.append((delivery_id, hook_id, *event, url, secret, previous_secret, previous_expires))
            return [
                ClaimedDelivery(
                    delivery_id,
                    hook_id,
                    event_id,
                    event_type,
                    attempts,
                    url,
                    secret,
                    body.encode(),
                    previous_secret,
                    previous_expires,
                )
                for (
                    delivery_id,
                    hook_id,
                    event_id,
                    attempts,
                    event_type,
                    body,
                    url,
                    secret,
                    previous_secret,
                    previous_expires,
                    *_,
                ) in sorted(leased)
            ]

        return await self._hot(work)

    async def release(self, delivery_ids: Sequence[int], now: float) -> None:
        """Hand back claimed deliveries untouched (the attempt was never made): due at once, and
        ahead of work that became due after them (a claim takes the earliest due first), so the
        worker that takes them over sends them next; idle workers are woken."""
        if not delivery_ids:
            return

        def work(conn: Connection) -> Any:
            due = (
                func.min(deliveries.c.created_at, now)
                if not self.is_postgres
                else func.least(deliveries.c.created_at, now)
            )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(delivery_ids))
                .values(next_attempt_at=due, lease_owner=None, attempts=deliveries.c.attempts - 1)
            )
            self._announce_work(conn)

        return await self._write(work)

    async def listen_for_work(self, on_work: Callable[[], None], retry_delay: float = 1.0) -> None:
        """Call ``on_work`` whenever any process commits new due work (PostgreSQL LISTEN/NOTIFY),
        and once after each (re)connection, since notifications sent while away are lost. Runs
        until cancelled and outlives database restarts; SQLite has no notifications (returns)."""
        if not self.is_postgres:
            return
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
            return (conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).one_or_none()

        return await self._read(work)

    async def requeue(
        self, webhook_id: int, now: float, delivery_id: int | None = None, since: float | None = None
    ) -> int:
        """Revive dead deliveries with a fresh attempt budget; held when the webhook is disabled."""

        def work(conn: Connection) -> Any:
            enabled = conn.scalar(select(webhooks.c.enabled).where(webhooks.c.id == webhook_id))
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
