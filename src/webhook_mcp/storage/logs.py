"""Attempt logs and statistics: log pages, stats from the hourly rollups, pruning old logs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, case, delete, func, literal, select

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.schema import (
    HISTOGRAM_COLUMNS,
    LATENCY_BUCKETS_MS,
    attempt_rollups,
    deliveries,
    delivery_attempts,
    delivery_counts,
)

EXACT_PERCENTILE_LIMIT = 10_000
STREAK_LIMIT = 10_000


def _histogram_percentile(counts: Sequence[int], rank: int) -> float:
    """The upper bound of the bucket holding the ``rank``-th fastest attempt (the open last bucket
    reports its lower bound: the percentile is at least that)."""
    seen = 0
    for bound, count in zip(LATENCY_BUCKETS_MS, counts, strict=False):
        seen += count
        if seen >= rank:
            return float(bound)
    return float(LATENCY_BUCKETS_MS[-1])


class LogQueries(StoreBase):
    async def attempts_page(
        self, webhook_id: int, limit: int, before_id: int | None, success: bool | None, is_test: bool | None
    ) -> list[Row[Any]]:
        a = delivery_attempts.c
        # Ordered by the whole index prefix (the filtered columns are constants), so PostgreSQL
        # walks (webhook_id[, filter], id) backwards instead of the primary key across all webhooks.
        order = [a.webhook_id.desc()]
        query = select(delivery_attempts).where(a.webhook_id == webhook_id).limit(limit)
        if before_id is not None:
            query = query.where(a.id < before_id)
        if success is not None:
            query = query.where(a.success.is_(success))
            order.append(a.success.desc())
        elif is_test is not None:
            query = query.where(a.is_test.is_(is_test))
            order.append(a.is_test.desc())
        if success is not None and is_test is not None:
            query = query.where(a.is_test.is_(is_test))
        query = query.order_by(*order, a.id.desc())

        def work(conn: Connection) -> Any:
            return list((conn.execute(query)).all())

        return await self._read(work)

    async def stats(self, webhook_id: int, since: float | None) -> dict[str, Any]:
        """Counts come from the hourly rollups (a window starts at the top of its first hour), so
        the cost does not grow with the log. The p95 is exact up to ``EXACT_PERCENTILE_LIMIT``
        attempts and otherwise the upper bound of the histogram bucket that holds it."""
        r = attempt_rollups.c
        a = delivery_attempts.c
        hour_from = None if since is None else since // 3600 * 3600
        in_window = literal(True) if hour_from is None else r.hour >= hour_from

        def windowed(column: Any) -> Any:
            return func.coalesce(func.sum(case((in_window, column), else_=0)), 0)

        def work(conn: Connection) -> Any:
            totals = conn.execute(
                select(
                    windowed(r.attempts).label("total"),
                    windowed(r.succeeded).label("succeeded"),
                    windowed(r.tests).label("tests"),
                    windowed(r.total_ms).label("total_ms"),
                    func.max(case((in_window, r.last_success_at))).label("last_success"),
                    func.max(case((in_window, r.last_failure_at))).label("last_failure"),
                    func.coalesce(func.sum(r.deliveries_succeeded), 0).label("deliveries_succeeded"),
                    *(windowed(r[name]).label(name) for name in HISTOGRAM_COLUMNS),
                ).where(r.webhook_id == webhook_id)
            ).one()
            total = int(totals.total)
            p95 = None
            if total:
                rank = math.ceil(0.95 * total)  # nearest-rank percentile
                if total <= EXACT_PERCENTILE_LIMIT:
                    scope = [a.webhook_id == webhook_id]
                    if hour_from is not None:
                        scope.append(a.created_at >= hour_from)
                    p95 = conn.scalar(
                        select(a.response_ms).where(*scope).order_by(a.response_ms).offset(rank - 1).limit(1)
                    )
                if p95 is None:  # large, or the logs behind the rollups were pruned
                    p95 = _histogram_percentile([int(totals._mapping[name]) for name in HISTOGRAM_COLUMNS], rank)
            window = [a.webhook_id == webhook_id]
            if hour_from is not None:
                window.append(a.created_at >= hour_from)
            last_success_id = conn.scalar(
                select(a.id)
                .where(a.webhook_id == webhook_id, a.success.is_(True))
                .order_by(a.webhook_id.desc(), a.success.desc(), a.id.desc())
                .limit(1)
            )
            if last_success_id is not None:
                window.append(a.id > last_success_id)
            since_success = select(a.id).where(*window).limit(STREAK_LIMIT).subquery()
            streak = conn.scalar(select(func.count()).select_from(since_success))
            d = deliveries.c
            # Kept exact by triggers on deliveries (see ``schema.delivery_counts``).
            c = delivery_counts.c
            states = {
                row.state: int(row.n)
                for row in conn.execute(
                    select(c.state, func.sum(c.n).label("n"))
                    .where(c.webhook_id == webhook_id)
                    .group_by(c.state)
                    .having(func.sum(c.n) != 0)
                )
            }
            states["succeeded"] = int(totals.deliveries_succeeded)
            # The webhook's queue index in due order: the first row tried before.
            next_retry = conn.scalar(
                select(d.next_attempt_at)
                .where(d.webhook_id == webhook_id, d.state == "pending", d.attempts > 0)
                .order_by(d.webhook_id, d.state, d.next_attempt_at)
                .limit(1)
            )
            return {
                "total": total,
                "succeeded": int(totals.succeeded),
                "tests": int(totals.tests),
                "avg_ms": float(totals.total_ms) / total if total else None,
                "p95_ms": None if p95 is None else float(p95),
                "last_success": totals.last_success,
                "last_failure": totals.last_failure,
                "streak": int(streak or 0),
                "states": states,
                "next_retry": next_retry,
            }

        return await self._read(work)

    async def prune_attempts(self, older_than: float, batch: int) -> int:
        """Delete one small batch of old log rows, so pruning never holds a long write lock."""

        def work(conn: Connection) -> Any:
            oldest = (
                select(delivery_attempts.c.id)
                .where(delivery_attempts.c.created_at < older_than)
                .order_by(delivery_attempts.c.id)
                .limit(batch)
            )
            result = conn.execute(delete(delivery_attempts).where(delivery_attempts.c.id.in_(oldest.scalar_subquery())))
            return int(result.rowcount)

        return await self._write(work)
