"""Deliveries: attempt logs, statistics, retrying one dead delivery and replaying them all."""

from __future__ import annotations

from webhook_mcp.core import models
from webhook_mcp.core.errors import InvalidArgumentError, NotFoundError
from webhook_mcp.service.base import ServiceBase

MAX_LOG_LIMIT = 100


class DeliveryOperations(ServiceBase):
    """Attempt logs, statistics, and redelivery of dead deliveries."""

    async def get_logs(
        self, webhook_id: int, limit: int = 20, cursor: str | None = None, status: str = "all"
    ) -> models.AttemptPage:
        await self._row(webhook_id)
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}")
        filters: dict[str, tuple[bool | None, bool | None]] = {
            "all": (None, None),
            "success": (True, None),
            "failed": (False, None),
            "test": (None, True),
        }
        if status not in filters:
            raise InvalidArgumentError(f"status must be one of {', '.join(filters)}, got {status!r}")
        before = None
        if cursor:
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
                raise InvalidArgumentError(
                    f"cursor {cursor!r} is not valid; pass the next_cursor of a previous get_webhook_logs call"
                )
            before = int(cursor)
        success, is_test = filters[status]
        rows = await self.store.attempts_page(webhook_id, limit + 1, before, success, is_test)
        page = rows[:limit]
        attempts = [
            models.Attempt(
                attempt_id=r.id,
                timestamp=models.to_datetime(r.created_at),
                event_type=r.event_type,
                event_id=r.event_id,
                delivery_id=r.delivery_id,
                attempt_number=r.attempt_number,
                status_code=r.status_code,
                response_ms=r.response_ms,
                success=r.success,
                error=r.error,
                response_excerpt=r.response_excerpt,
                is_test=r.is_test,
            )
            for r in page
        ]
        next_cursor = str(page[-1].id) if len(rows) > limit else None
        return models.AttemptPage(webhook_id=webhook_id, attempts=attempts, next_cursor=next_cursor)

    async def get_stats(self, webhook_id: int, window_hours: float | None = None) -> models.WebhookStats:
        await self._row(webhook_id)
        if window_hours is not None and not 0 < window_hours <= 24 * 366:
            raise InvalidArgumentError(f"window_hours must be between 0 and {24 * 366} hours, got {window_hours}")
        since = None if window_hours is None else self._clock() - window_hours * 3600
        s = await self.store.stats(webhook_id, since)
        if s is None:  # the store refuses another tenant's webhook, whatever the check above said
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        states = s["states"]
        total = s["total"]
        return models.WebhookStats(
            webhook_id=webhook_id,
            window_hours=window_hours,
            total_attempts=total,
            succeeded=s["succeeded"],
            failed=total - s["succeeded"],
            test_attempts=s["tests"],
            success_rate=round(100.0 * s["succeeded"] / total, 2) if total else None,
            avg_response_ms=None if s["avg_ms"] is None else round(s["avg_ms"], 1),
            p95_response_ms=s["p95_ms"],
            last_success_at=models.to_datetime(s["last_success"]),
            last_failure_at=models.to_datetime(s["last_failure"]),
            consecutive_failures=s["streak"],
            pending_deliveries=int(states.get("pending", 0)),
            held_deliveries=int(states.get("held", 0)),
            failed_deliveries=int(states.get("failed", 0)),
            succeeded_deliveries=int(states.get("succeeded", 0)),
            next_retry_at=models.to_datetime(s["next_retry"]),
        )

    async def retry_delivery(self, delivery_id: int) -> models.Delivery:
        row = await self.store.get_delivery(delivery_id)
        if row is None:
            raise NotFoundError(f"no delivery with id {delivery_id}; get_webhook_logs shows each attempt's delivery_id")
        if row.state != "failed":
            raise InvalidArgumentError(
                f"delivery {delivery_id} is {row.state}, not failed; only failed (dead) deliveries can be retried"
            )
        await self.store.requeue(row.webhook_id, self._clock(), delivery_id=delivery_id)
        if self._on_publish:
            self._on_publish()
        return await self.get_delivery(delivery_id)

    async def get_delivery(self, delivery_id: int) -> models.Delivery:
        row = await self.store.get_delivery(delivery_id)
        if row is None:
            raise NotFoundError(f"no delivery with id {delivery_id}; get_webhook_logs shows each attempt's delivery_id")
        return models.Delivery(
            id=row.id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            state=row.state,
            attempts=row.attempts,
            next_attempt_at=models.to_datetime(row.next_attempt_at) if row.state == "pending" else None,
            last_status=row.last_status,
            last_error=row.last_error,
        )

    async def replay_failed(self, webhook_id: int, since_hours: float | None = None) -> models.ReplayResult:
        row = await self._row(webhook_id)
        if since_hours is not None and since_hours <= 0:
            raise InvalidArgumentError(f"since_hours must be positive, got {since_hours}")
        since = None if since_hours is None else self._clock() - since_hours * 3600
        count = await self.store.requeue(webhook_id, self._clock(), since=since)
        if count and self._on_publish:
            self._on_publish()
        return models.ReplayResult(webhook_id=webhook_id, requeued=count, held=not row.enabled)
