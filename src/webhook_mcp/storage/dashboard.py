"""Reads for the web dashboard: every webhook's health in a few statements, hourly series from the
rollups, the attempt log across webhooks with filters, and one attempt with what it was about."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Row, and_, func, select

from webhook_mcp.storage.base import MAX_ROW_ID, StoreBase
from webhook_mcp.storage.logs import EXACT_PERCENTILE_LIMIT, _histogram_percentile
from webhook_mcp.storage.schema import (
    HISTOGRAM_COLUMNS,
    attempt_rollups,
    deliveries,
    delivery_attempts,
    events,
    webhooks,
)

Outcome = Literal["all", "success", "failed", "http_4xx", "http_5xx", "no_response", "test"]


@dataclass(frozen=True, slots=True)
class AttemptFilter:
    """Which attempts a log page shows; every field is optional (None: no condition)."""

    webhook_id: int | None = None
    outcome: Outcome = "all"
    event_type: str | None = None
    since: float | None = None
    until: float | None = None


def _outcome_condition(outcome: Outcome) -> ColumnElement[bool] | None:
    a = delivery_attempts.c
    conditions: dict[str, ColumnElement[bool]] = {
        "success": a.success.is_(True),
        "failed": a.success.is_(False),
        "http_4xx": and_(a.success.is_(False), a.status_code >= 400, a.status_code < 500),
        "http_5xx": and_(a.success.is_(False), a.status_code >= 500),
        "no_response": and_(a.success.is_(False), a.status_code.is_(None)),
        "test": a.is_test.is_(True),
    }
    return conditions.get(outcome)


def _filter_conditions(chosen: AttemptFilter) -> list[ColumnElement[bool]]:
    a = delivery_attempts.c
    conditions: list[ColumnElement[bool]] = []
    if chosen.webhook_id is not None:
        conditions.append(a.webhook_id == chosen.webhook_id)
    outcome = _outcome_condition(chosen.outcome)
    if outcome is not None:
        conditions.append(outcome)
    if chosen.event_type is not None:
        conditions.append(a.event_type == chosen.event_type)
    if chosen.since is not None:
        conditions.append(a.created_at >= chosen.since)
    if chosen.until is not None:
        conditions.append(a.created_at < chosen.until)
    return conditions


class DashboardQueries(StoreBase):
    async def health_overview(self, since: float) -> dict[int, dict[str, Any]]:
        """Per webhook with attempts or waiting deliveries: attempts and successes since the top of
        ``since``'s hour (from the rollups), their p95 (exact up to ``EXACT_PERCENTILE_LIMIT``
        attempts, else the histogram bucket's bound) and its pending, held and dead deliveries."""
        r = attempt_rollups.c
        d = deliveries.c
        hour_from = since // 3600 * 3600

        def work(conn: Connection) -> dict[int, dict[str, Any]]:
            overview: dict[int, dict[str, Any]] = {}
            totals = conn.execute(
                select(
                    r.webhook_id,
                    func.sum(r.attempts).label("attempts"),
                    func.sum(r.succeeded).label("succeeded"),
                    *(func.sum(r[name]).label(name) for name in HISTOGRAM_COLUMNS),
                )
                .where(r.hour >= hour_from, self._hooks_in_scope(r.webhook_id))
                .group_by(r.webhook_id)
            )
            for row in totals:
                attempts = int(row.attempts)
                p95 = self._p95(conn, row.webhook_id, hour_from, attempts, row) if attempts else None
                overview[row.webhook_id] = {"attempts": attempts, "succeeded": int(row.succeeded), "p95_ms": p95}
            waiting = conn.execute(
                select(d.webhook_id, d.state, func.count().label("n"))
                .where(d.state.in_(("pending", "held", "failed")), self._hooks_in_scope(d.webhook_id))
                .group_by(d.webhook_id, d.state)
            )
            for row in waiting:
                overview.setdefault(row.webhook_id, {"attempts": 0, "succeeded": 0, "p95_ms": None})[row.state] = row.n
            return overview

        return await self._read(work)

    @staticmethod
    def _p95(conn: Connection, webhook_id: int, hour_from: float, attempts: int, totals: Row[Any]) -> float:
        a = delivery_attempts.c
        rank = math.ceil(0.95 * attempts)
        exact = None
        if attempts <= EXACT_PERCENTILE_LIMIT:
            exact = conn.scalar(
                select(a.response_ms)
                .where(a.webhook_id == webhook_id, a.created_at >= hour_from)
                .order_by(a.response_ms)
                .offset(rank - 1)
                .limit(1)
            )
        if exact is None:  # many attempts, or the logs behind the rollups were pruned
            return _histogram_percentile([int(totals._mapping[name]) for name in HISTOGRAM_COLUMNS], rank)
        return float(exact)

    async def hourly_rollups(self, webhook_id: int, since: float) -> list[Row[Any]]:
        """The webhook's hourly rollup rows from the top of ``since``'s hour, oldest first."""
        r = attempt_rollups.c
        mine = self._hooks_in_scope(r.webhook_id)
        query = select(attempt_rollups).where(r.webhook_id == webhook_id, mine, r.hour >= since // 3600 * 3600)
        return await self._read(lambda conn: list(conn.execute(query.order_by(r.hour)).all()))

    async def attempt_log(
        self, chosen: AttemptFilter, limit: int, before_id: int | None = None, after_id: int | None = None
    ) -> list[Row[Any]]:
        """Up to ``limit`` attempts matching ``chosen``, newest first: those older than
        ``before_id``, or the ones just newer than ``after_id`` (paging back towards now)."""
        a = delivery_attempts.c
        mine = self._hooks_in_scope(a.webhook_id)
        query = select(delivery_attempts).where(*_filter_conditions(chosen), mine).limit(limit)
        if after_id is not None:
            rows = await self._read(lambda conn: list(conn.execute(query.where(a.id > after_id).order_by(a.id)).all()))
            return rows[::-1]
        if before_id is not None:
            query = query.where(a.id < before_id)
        return await self._read(lambda conn: list(conn.execute(query.order_by(a.id.desc())).all()))

    async def attempt_context(self, attempt_id: int) -> dict[str, Any] | None:
        """One attempt with its webhook, delivery and event as they are now (each None when gone:
        deleted, or pruned by retention); None when there is no such attempt."""
        if not 0 < attempt_id <= MAX_ROW_ID:
            return None

        def work(conn: Connection) -> dict[str, Any] | None:
            a = delivery_attempts.c
            mine = select(delivery_attempts).where(a.id == attempt_id, self._hooks_in_scope(a.webhook_id))
            attempt = conn.execute(mine).one_or_none()
            if attempt is None:
                return None
            delivery = None
            if attempt.delivery_id is not None:
                delivery = conn.execute(select(deliveries).where(deliveries.c.id == attempt.delivery_id)).one_or_none()
            return {
                "attempt": attempt,
                "webhook": conn.execute(select(webhooks).where(webhooks.c.id == attempt.webhook_id)).one_or_none(),
                "delivery": delivery,
                "event": conn.execute(
                    select(events).where(events.c.id == attempt.event_id, self._in_scope(events.c.tenant_id))
                ).one_or_none(),
            }

        return await self._read(work)
