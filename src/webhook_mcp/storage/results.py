"""Results: each batch of attempts is written with its deliveries' next state, the hourly rollups
and the webhooks' health in one transaction."""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.pipeline import HotTransaction
from webhook_mcp.storage.records import (
    AttemptRecord,
    HealthPolicy,
    Recorded,
)
from webhook_mcp.storage.schema import (
    HISTOGRAM_COLUMNS,
    LATENCY_BUCKETS_MS,
    MAX_ERROR_LENGTH,
)


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL, and a receiver's answer may contain anything."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _clip(text: str | None, limit: int = MAX_ERROR_LENGTH) -> str | None:
    return None if text is None else _storable(text[:limit])


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _rollups(records: Sequence[AttemptRecord]) -> list[dict[str, Any]]:
    """The batch's additions to the hourly rollups (written in the batch's own transaction, so
    they never drift from the logs), in key order so concurrent writers cannot deadlock."""
    rollups: dict[tuple[int, float], dict[str, Any]] = {}
    for r in records:
        key = (r.webhook_id, r.created_at // 3600 * 3600)
        row = rollups.get(key)
        if row is None:
            row = rollups[key] = dict.fromkeys(HISTOGRAM_COLUMNS, 0) | {
                "webhook_id": key[0],
                "hour": key[1],
                "attempts": 0,
                "succeeded": 0,
                "tests": 0,
                "deliveries_succeeded": 0,
                "total_ms": 0.0,
                "last_success_at": None,
                "last_failure_at": None,
            }
        row["attempts"] += 1
        row["total_ms"] += r.response_ms
        row[HISTOGRAM_COLUMNS[bisect.bisect_left(LATENCY_BUCKETS_MS, r.response_ms)]] += 1
        if r.is_test:
            row["tests"] += 1
        if r.success:
            row["succeeded"] += 1
            row["deliveries_succeeded"] += not r.is_test
            row["last_success_at"] = max(row["last_success_at"] or 0.0, r.created_at)
        else:
            row["last_failure_at"] = max(row["last_failure_at"] or 0.0, r.created_at)
    return [rollups[key] for key in sorted(rollups)]


def _health(
    records: Sequence[AttemptRecord], now: float, policy: HealthPolicy | None, current: Mapping[int, tuple[Any, ...]]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Each webhook's health counters after the batch (from ``current``, its locked row), and the
    webhooks the batch disables, with the reason: the endpoint said it is gone, or every delivery
    has failed for the policy's time."""
    by_hook: dict[int, list[AttemptRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.webhook_id):
        by_hook[record.webhook_id].append(record)
    health: list[dict[str, Any]] = []
    disabled: list[tuple[int, str]] = []
    for hook_id, batch in by_hook.items():
        _id, enabled, failures, failing_since, last_success, last_failure = current[hook_id]
        gone_reason = None
        for record in sorted(batch, key=lambda r: r.created_at):
            if record.success:
                failures, failing_since, last_success = 0, None, record.created_at
            else:
                failures += 1
                failing_since = failing_since or record.created_at
                last_failure = record.created_at
                gone_reason = record.disable_reason or gone_reason
        health.append(
            {
                "id": hook_id,
                "consecutive_failures": failures,
                "failing_since": failing_since,
                "last_success_at": last_success,
                "last_failure_at": last_failure,
            }
        )
        reason = gone_reason
        if (
            reason is None
            and policy is not None
            and failing_since is not None
            and failures >= policy.min_failures
            and now - failing_since >= policy.auto_disable_after
        ):
            reason = (
                f"auto-disabled: every delivery failed for {_duration(policy.auto_disable_after)} "
                f"({failures} failures in a row); "
                "fix the endpoint, check it with test_webhook, then toggle_webhook to re-enable"
            )
        if reason is not None and enabled:
            disabled.append((hook_id, reason))
    return health, disabled


def _attempt_row(r: AttemptRecord, now: float) -> dict[str, Any]:
    """An attempt log row, with what becomes of its delivery (the dialect's statements take both)."""
    return {
        "webhook_id": r.webhook_id,
        "delivery_id": r.delivery_id,
        "event_id": r.event_id,
        "event_type": r.event_type,
        "attempt_number": r.attempt_number,
        "is_test": r.is_test,
        "created_at": r.created_at,
        "status_code": r.status_code,
        "response_ms": r.response_ms,
        "success": r.success,
        "error": _clip(r.error),
        "response_excerpt": _storable(r.response_excerpt),
        "next_state": r.next_state,
        "next_attempt_at": r.next_attempt_at if r.next_attempt_at is not None else r.created_at,
        "completed_at": r.created_at if r.next_state in ("succeeded", "failed") else None,
        "now": now,
    }


class ResultQueries(StoreBase):
    async def record_attempts(
        self, records: Sequence[AttemptRecord], now: float, policy: HealthPolicy | None = None
    ) -> Recorded:
        """Write a batch of attempts, their deliveries' next state and their webhooks' health in
        one transaction; says which webhooks this batch disabled and which of its webhooks are
        disabled or gone (a worker stops sending what it queued for them)."""
        if self.tenant_id is not None:  # a tenant's view writes results for its own webhooks only
            mine = await self._own_webhooks({r.webhook_id for r in records})
            records = [r for r in records if r.webhook_id in mine]
        if not records:
            return Recorded([], frozenset())

        sql = self._queue_sql
        rows = [_attempt_row(r, now) for r in records]

        def work(tx: HotTransaction) -> Any:
            if sql.results_setup is not None:
                tx.send(sql.results_setup, {})
            ids = sql.ids(sorted({r.webhook_id for r in records}))
            current = {row[0]: row for row in tx.fetch(sql.lock_hooks, {"ids": ids})}
            # A webhook deleted while its delivery was in flight: its late result has nowhere to go
            # (and must not fail the whole batch, other webhooks' results with it, for ever).
            live = [r for r in records if r.webhook_id in current]
            live_rows = rows if len(live) == len(records) else [row for row in rows if row["webhook_id"] in current]
            stopped = ({r.webhook_id for r in records} - current.keys()) | {
                hook_id for hook_id, row in current.items() if not row[1]
            }
            if not live:
                return Recorded([], frozenset(stopped))
            # Driver SQL, not SQLAlchemy statements: per-row parameter handling would cost more
            # than the rows themselves at dispatcher rates.
            if sql.finish is None:
                tx.send(sql.log_attempts, {"rows": json.dumps(live_rows), "now": now})
            else:
                tx.send(sql.log_attempts, live_rows)
            tx.send(self._queue_sql.roll_up, _rollups(live))
            real = [r for r in live if r.delivery_id is not None]
            if not real:
                return Recorded([], frozenset(stopped))
            if sql.finish is not None:
                tx.send(sql.finish, [row for row in live_rows if row["delivery_id"] is not None])
            health, disabled = _health(real, now, policy, current)
            tx.send(sql.health, health)
            if disabled:
                tx.send(sql.disable, [{"id": hook_id, "reason": reason, "now": now} for hook_id, reason in disabled])
            disabled_now = [hook_id for hook_id, _reason in disabled] + [
                hook_id for hook_id, row in current.items() if not row[1]
            ]
            if disabled_now:
                tx.send(sql.hold_waiting, {"ids": sql.ids(disabled_now), "now": now})
            return Recorded([hook_id for hook_id, _reason in disabled], frozenset(stopped.union(disabled_now)))

        return await self._hot(work)
