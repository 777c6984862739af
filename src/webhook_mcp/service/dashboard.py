"""What the web dashboard shows, read through the same store and rules as the tools: every
webhook's health, hourly series for charts, the attempt log with filters, and one attempt as it
went out (its request rebuilt exactly from the stored event, the attempt's time and the secret)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Row

from webhook_mcp.core import models
from webhook_mcp.core.catalog import TEST_EVENT
from webhook_mcp.core.errors import InvalidArgumentError, NotFoundError, WebhookError
from webhook_mcp.core.signing import secret_key, signed_headers
from webhook_mcp.core.vault import Vault
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.texts import envelope
from webhook_mcp.storage.dashboard import AttemptFilter, Outcome
from webhook_mcp.storage.logs import _histogram_percentile
from webhook_mcp.storage.schema import HISTOGRAM_COLUMNS

HEALTH_WINDOW_HOURS = 24
CHART_DAYS = 7
LOG_PAGE_SIZE = 50
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
WebhookState = Literal["enabled", "disabled", "auto-disabled"]


@dataclass(frozen=True, slots=True)
class WebhookHealth:
    webhook: models.Webhook
    state: WebhookState
    attempts: int  # over the health window, tests included
    success_rate: float | None  # percent; None without attempts
    p95_ms: float | None
    pending: int
    held: int
    dead: int


@dataclass(frozen=True, slots=True)
class HourPoint:
    hour: float  # epoch seconds at the top of the hour
    attempts: int
    succeeded: int
    avg_ms: float | None
    p95_ms: float | None  # the upper bound of the latency bucket holding it

    @property
    def success_rate(self) -> float | None:
        return 100.0 * self.succeeded / self.attempts if self.attempts else None


@dataclass(frozen=True, slots=True)
class LogEntry:
    attempt: models.Attempt
    webhook_id: int
    url: str | None  # None once the webhook is deleted


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[LogEntry]
    newer_than: int | None  # pass as ``after`` for the next newer page; None at the newest
    older_than: int | None  # pass as ``before`` for the next older page; None at the oldest


@dataclass(frozen=True, slots=True)
class SentRequest:
    url: str
    headers: dict[str, str]
    body: str
    exact: bool  # False: rebuilt with a secret that may differ from the one that signed it
    notes: list[str]


@dataclass(frozen=True, slots=True)
class AttemptDetail:
    attempt: models.Attempt
    webhook: models.Webhook | None
    delivery: models.Delivery | None
    request: SentRequest | None
    outcome: str  # what happened, in words


def webhook_state(webhook: models.Webhook) -> WebhookState:
    """Disabled by a person, or by the service itself (a 410 Gone, or failing for too long)."""
    if webhook.enabled:
        return "enabled"
    reason = webhook.disabled_reason or ""
    return "auto-disabled" if reason.startswith(("auto-disabled", "disabled: the endpoint")) else "disabled"


def describe_outcome(attempt: models.Attempt) -> str:
    """The attempt's result in a sentence a person reads at a glance."""
    status = attempt.status_code
    phrase = ""
    if status is not None:
        try:
            phrase = f" {HTTPStatus(status).phrase}"
        except ValueError:
            phrase = ""
    took = f"after {attempt.response_ms:.0f} ms"
    if attempt.success:
        return f"Delivered: the receiver answered {status}{phrase} {took}."
    if status is None:
        return f"No response {took}: {attempt.error or 'the request failed'}."
    if status == 410:
        return f"The receiver answered 410 Gone {took}: it asked for no more deliveries, so the webhook was disabled."
    if status == 429 or status >= 500:
        side = "is overloaded" if status in (429, 503) else "failed on its side"
        return f"The receiver answered {status}{phrase} {took}: it {side}."
    return (
        f"The receiver answered {status}{phrase} {took}: it refused the request (check its URL, its "
        "signature verification and what it expects)."
    )


def _host_header(url: str) -> str:
    try:
        return httpx.URL(url).netloc.decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError):
        return urlsplit(url).netloc


def attempt_model(row: Row[Any]) -> models.Attempt:
    return models.Attempt(
        attempt_id=row.id,
        timestamp=models.to_datetime(row.created_at),
        event_type=row.event_type,
        event_id=row.event_id,
        delivery_id=row.delivery_id,
        attempt_number=row.attempt_number,
        status_code=row.status_code,
        response_ms=row.response_ms,
        success=row.success,
        error=row.error,
        response_excerpt=row.response_excerpt,
        is_test=row.is_test,
    )


def parse_filter(
    webhook_id: int | None, outcome: str, event_type: str | None, since: float | None, until: float | None
) -> AttemptFilter:
    if outcome not in OUTCOMES:
        raise InvalidArgumentError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if since is not None and until is not None and since >= until:
        raise InvalidArgumentError("the 'from' time must be before the 'to' time; swap them or clear one")
    return AttemptFilter(webhook_id, outcome, event_type or None, since, until)  # type: ignore[arg-type]


class DashboardService:
    """Reads only; the dashboard's actions call ``WebhookService`` itself, as the tools do."""

    def __init__(self, service: WebhookService, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.store = service.store
        self._vault = Vault(service.settings.secret_key)
        self._clock = clock

    async def health(self) -> list[WebhookHealth]:
        hooks = (await self.service.list_webhooks()).webhooks
        overview = await self.store.health_overview(self._clock() - HEALTH_WINDOW_HOURS * 3600)
        rows = []
        for hook in hooks:
            seen = overview.get(hook.id, {})
            attempts = int(seen.get("attempts", 0))
            rate = 100.0 * int(seen.get("succeeded", 0)) / attempts if attempts else None
            rows.append(
                WebhookHealth(
                    webhook=hook,
                    state=webhook_state(hook),
                    attempts=attempts,
                    success_rate=rate,
                    p95_ms=seen.get("p95_ms"),
                    pending=int(seen.get("pending", 0)),
                    held=int(seen.get("held", 0)),
                    dead=int(seen.get("failed", 0)),
                )
            )
        return rows

    async def hourly(self, webhook_id: int, days: int = CHART_DAYS) -> list[HourPoint]:
        """One point per hour of the last ``days`` days, the current hour last; empty hours are zeros."""
        await self.service.get_webhook(webhook_id)
        last_hour = self._clock() // 3600 * 3600
        first_hour = last_hour - (days * 24 - 1) * 3600
        rows = {row.hour: row for row in await self.store.hourly_rollups(webhook_id, first_hour)}
        points = []
        for index in range(days * 24):
            hour = first_hour + index * 3600
            row = rows.get(hour)
            if row is None or not row.attempts:
                points.append(HourPoint(hour, 0, 0, None, None))
                continue
            counts = [int(row._mapping[name]) for name in HISTOGRAM_COLUMNS]
            p95 = _histogram_percentile(counts, math.ceil(0.95 * row.attempts))
            points.append(HourPoint(hour, row.attempts, row.succeeded, row.total_ms / row.attempts, p95))
        return points

    async def log(
        self, chosen: AttemptFilter, before: int | None = None, after: int | None = None, size: int = LOG_PAGE_SIZE
    ) -> LogPage:
        if chosen.webhook_id is not None:
            await self.service.get_webhook(chosen.webhook_id)
        rows = await self.store.attempt_log(chosen, size + 1, before, after)
        more = len(rows) > size
        page = rows[1:] if more and after is not None else rows[:size]
        at_newest = after is None and before is None
        newer = None if at_newest or not page or (after is not None and not more) else page[0].id
        older = page[-1].id if page and (more or after is not None) else None
        urls = {hook.id: hook.url for hook in (await self.service.list_webhooks()).webhooks}
        entries = [LogEntry(attempt_model(row), row.webhook_id, urls.get(row.webhook_id)) for row in page]
        return LogPage(entries, newer, older)

    async def attempt(self, attempt_id: int) -> AttemptDetail:
        found = await self.store.attempt_context(attempt_id)
        if found is None:
            raise NotFoundError(f"no attempt with id {attempt_id}; the delivery log lists them (old ones are pruned)")
        row = found["attempt"]
        attempt = attempt_model(row)
        webhook_row = found["webhook"]
        webhook = None if webhook_row is None else await self.service.get_webhook(webhook_row.id)
        delivery = None
        if found["delivery"] is not None:
            delivery = await self.service.get_delivery(found["delivery"].id)
        request = None if webhook_row is None else self._sent_request(row, webhook_row, found["event"])
        return AttemptDetail(attempt, webhook, delivery, request, describe_outcome(attempt))

    def _sent_body(self, attempt: Row[Any], event: Row[Any] | None) -> tuple[str | None, str]:
        """The body as sent: the stored event's; a test's (never stored) from the catalog sample
        it was made of; None once retention has pruned the event."""
        if event is not None:
            return event.body, "The body is the stored event, byte for byte."
        if not attempt.is_test:
            return None, "The event was pruned by retention: its body is no longer stored."
        try:
            kind = self.service.catalog.get(attempt.event_type)
        except WebhookError:
            return None, f"The test used event type {attempt.event_type}, which the catalog no longer has."
        data = dict(kind.example)
        if kind.name == TEST_EVENT:
            data["webhook_id"] = attempt.webhook_id
        body = envelope(attempt.event_id, kind.name, attempt.created_at, data)
        return body, "Tests are not stored: the body is rebuilt from the catalog sample the test was made of."

    def _sent_request(self, attempt: Row[Any], webhook: Row[Any], event: Row[Any] | None) -> SentRequest | None:
        body, body_note = self._sent_body(attempt, event)
        if body is None:
            return SentRequest(webhook.url, {}, "", False, [body_note])
        sent_at = attempt.created_at
        rotated = webhook.secret_rotated_at
        exact = rotated is None or rotated <= sent_at
        previous = webhook.previous_secret
        expires = webhook.previous_secret_expires_at
        try:
            previous_key = None
            if exact and previous is not None and expires is not None and sent_at < expires:
                previous_key = secret_key(self._vault.reveal(previous))
            key = secret_key(self._vault.reveal(webhook.secret))
        except WebhookError as exc:
            return SentRequest(webhook.url, {}, body, False, [body_note, f"The signature cannot be rebuilt: {exc}"])
        raw = body.encode()
        headers = {"host": _host_header(webhook.url)}
        headers.update(signed_headers(key, attempt.event_id, int(sent_at), raw, previous_key))
        headers["content-length"] = str(len(raw))
        notes = [body_note]
        if exact:
            notes.append(
                "The headers are rebuilt from the event id, the attempt's time and the webhook's secret, which "
                "has not been rotated since: they are exactly what was sent."
            )
        else:
            notes.append(
                f"The secret was rotated after this attempt (at {models.to_datetime(rotated):%Y-%m-%d %H:%M:%S} "
                "UTC): the signature shown is made with today's secret, not the older one that signed the request. "
                "webhook-id, webhook-timestamp and the body are as sent."
            )
        return SentRequest(webhook.url, headers, body, exact, notes)
