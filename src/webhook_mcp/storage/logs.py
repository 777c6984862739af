"""Attempt logs and statistics: log pages, stats from the hourly rollups, pruning old logs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, case, delete, func, literal, select, text

from webhook_mcp.storage.base import MAX_WEBHOOK_ID, StoreBase
from webhook_mcp.storage.schema import (
    HISTOGRAM_COLUMNS,
    LATENCY_BUCKETS_MS,
    attempt_rollups,
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


def _rollup_totals(conn: Connection, webhook_id: int, hour_from: float | None) -> Row[Any]:
    """The webhook's hourly rollups summed over the window (all time for delivered counts)."""
    r = attempt_rollups.c
    in_window = literal(True) if hour_from is None else r.hour >= hour_from

    def windowed(column: Any) -> Any:
        return func.coalesce(func.sum(case((in_window, column), else_=0)), 0)

    return conn.execute(
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


def _p95(conn: Connection, webhook_id: int, hour_from: float | None, totals: Row[Any]) -> float:
    """Exact from the log up to ``EXACT_PERCENTILE_LIMIT`` attempts, else from the histogram."""
    a = delivery_attempts.c
    total = int(totals.total)
    rank = math.ceil(0.95 * total)  # nearest-rank percentile
    p95 = None
    if total <= EXACT_PERCENTILE_LIMIT:
        scope = [a.webhook_id == webhook_id]
        if hour_from is not None:
            scope.append(a.created_at >= hour_from)
        p95 = conn.scalar(select(a.response_ms).where(*scope).order_by(a.response_ms).offset(rank - 1).limit(1))
    if p95 is None:  # large, or the logs behind the rollups were pruned
        p95 = _histogram_percentile([int(totals._mapping[name]) for name in HISTOGRAM_COLUMNS], rank)
    return float(p95)


def _failure_streak(conn: Connection, webhook_id: int, hour_from: float | None) -> int:
    """Attempts since the last success (within the window), counted up to ``STREAK_LIMIT``."""
    a = delivery_attempts.c
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
    return int(conn.scalar(select(func.count()).select_from(since_success)) or 0)


def _delivery_states(conn: Connection, webhook_id: int) -> dict[str, int]:
    """Deliveries by state, kept exact by triggers on deliveries (see ``schema.delivery_counts``)."""
    c = delivery_counts.c
    query = (
        select(c.state, func.sum(c.n).label("n"))
        .where(c.webhook_id == webhook_id)
        .group_by(c.state)
        .having(func.sum(c.n) != 0)
    )
    return {row.state: int(row.n) for row in conn.execute(query)}


# The condition spelled as ix_deliveries_retrying's, literally: a planner matches a partial index
# only to the same terms with the same constants. SQLite is told the index: without statistics its
# planner prefers the queue index, and walks the backlog never tried yet.
_NEXT_RETRY = (
    "SELECT next_attempt_at FROM deliveries{hint} WHERE webhook_id = :webhook_id "
    "AND state = 'pending' AND attempts > 0 ORDER BY webhook_id, next_attempt_at LIMIT 1"
)
_NEXT_RETRY_BY_DIALECT = {
    "sqlite": text(_NEXT_RETRY.format(hint=" INDEXED BY ix_deliveries_retrying")),
    "postgresql": text(_NEXT_RETRY.format(hint="")),
}


def _next_retry(conn: Connection, webhook_id: int) -> float | None:
    """When the webhook's next retry is due: one probe of ix_deliveries_retrying."""
    return conn.scalar(_NEXT_RETRY_BY_DIALECT[conn.dialect.name], {"webhook_id": webhook_id})  # type: ignore[no-any-return]


class LogQueries(StoreBase):
    async def attempts_page(
        self, webhook_id: int, limit: int, before_id: int | None, success: bool | None, is_test: bool | None
    ) -> list[Row[Any]]:
        a = delivery_attempts.c
        # Ordered by the whole index prefix (the filtered columns are constants), so PostgreSQL
        # walks (webhook_id[, filter], id) backwards instead of the primary key across all webhooks.
        order = [a.webhook_id.desc()]
        mine = self._hooks_in_scope(a.webhook_id)
        query = select(delivery_attempts).where(a.webhook_id == webhook_id, mine).limit(limit)
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

    async def stats(self, webhook_id: int, since: float | None) -> dict[str, Any] | None:
        """Counts come from the hourly rollups (a window starts at the top of its first hour), so
        the cost does not grow with the log. The p95 is exact up to ``EXACT_PERCENTILE_LIMIT``
        attempts and otherwise the upper bound of the histogram bucket that holds it. None when
        the webhook is not this view's tenant's."""
        hour_from = None if since is None else since // 3600 * 3600
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> dict[str, Any] | None:
            if not self._sees_webhook(conn, webhook_id):
                return None
            totals = _rollup_totals(conn, webhook_id, hour_from)
            total = int(totals.total)
            states = _delivery_states(conn, webhook_id)
            states["succeeded"] = int(totals.deliveries_succeeded)
            p95 = _p95(conn, webhook_id, hour_from, totals) if total else None
            return {
                "total": total,
                "succeeded": int(totals.succeeded),
                "tests": int(totals.tests),
                "avg_ms": float(totals.total_ms) / total if total else None,
                "p95_ms": None if p95 is None else float(p95),
                "last_success": totals.last_success,
                "last_failure": totals.last_failure,
                "streak": _failure_streak(conn, webhook_id, hour_from),
                "states": states,
                "next_retry": _next_retry(conn, webhook_id),
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
