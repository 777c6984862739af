"""Every webhook operation and its rules. Called by the MCP server, the CLI, the HTTP API and
Python code alike; knows nothing of MCP."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row

from webhook_mcp.core import metrics, models
from webhook_mcp.core.catalog import TEST_EVENT, Catalog
from webhook_mcp.core.errors import InvalidArgumentError, InvalidPayloadError, NotFoundError
from webhook_mcp.core.jsonsafe import dumps_strict
from webhook_mcp.core.settings import Settings
from webhook_mcp.core.signing import generate_secret, mask_secret, secret_key, signed_headers
from webhook_mcp.core.vault import Vault
from webhook_mcp.delivery.sender import Sender
from webhook_mcp.storage.events import new_event_id
from webhook_mcp.storage.records import AttemptRecord, NewEvent
from webhook_mcp.storage.schema import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH
from webhook_mcp.storage.store import Store

MAX_LOG_LIMIT = 100
DEFAULT_GRACE_HOURS = 24.0
MAX_GRACE_HOURS = 720.0
MAX_IDEMPOTENCY_KEY = 200
SAMPLE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VERIFY_HINT = (
    "Verify each request with the Standard Webhooks library: "
    "standardwebhooks.Webhook(secret).verify(raw_body, headers) (or svix.webhooks.Webhook); "
    "it checks the HMAC-SHA256 in webhook-signature over 'webhook-id.webhook-timestamp.body' "
    "and rejects timestamps more than 5 minutes old. In Python, webhook_mcp.verify(raw_body, headers, secret) "
    "does the same. During a rotation's grace period requests carry two signatures (new and previous "
    "secret); either secret verifies."
)


_HOST_LABELS = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_host) <= 253 and _HOST_LABELS.match(ascii_host.lower()) is not None


def _check_text(name: str, value: str) -> str:
    """Text every database stores and every HTTP library sends: no NUL, no unpaired surrogate."""
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} contains a NUL character (\\x00); remove it")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{name} contains {value[exc.start]!r}, an unpaired surrogate that is not valid Unicode; send UTF-8 text"
        ) from exc
    return value


def envelope(event_id: str, event_type: str, created_at: float, data: dict[str, Any]) -> str:
    """The body every receiver gets; serialised once, so retries send byte-identical bodies."""
    timestamp = datetime.fromtimestamp(created_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # Strict: a NaN or Infinity would make the body unreadable to every standard JSON parser.
    return dumps_strict({"id": event_id, "type": event_type, "timestamp": timestamp, "data": data})


def _rotation_ends(row: Row[Any], now: float) -> float | None:
    """When the previous secret stops signing, if a rotation's grace period is still running."""
    expires: float | None = row.previous_secret_expires_at
    return expires if row.previous_secret is not None and expires is not None and expires > now else None


def _webhook_model(row: Row[Any], vault: Vault, now: float) -> models.Webhook:
    return models.Webhook(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=models.to_datetime(row.disabled_at),
        secret_hint=mask_secret(vault.reveal(row.secret)),
        secret_rotation_ends_at=models.to_datetime(_rotation_ends(row, now)),
        created_at=models.to_datetime(row.created_at),
        updated_at=models.to_datetime(row.updated_at),
        consecutive_failures=row.consecutive_failures,
        last_success_at=models.to_datetime(row.last_success_at),
        last_failure_at=models.to_datetime(row.last_failure_at),
    )


class WebhookService:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        sender: Sender,
        settings: Settings,
        *,
        on_publish: Callable[[], None] | None = None,
        on_change: Callable[[int], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.sender = sender
        self.settings = settings
        self._on_publish = on_publish
        self._on_change = on_change
        self._clock = clock
        self._vault = Vault(settings.secret_key)

    async def _changed(self, webhook_id: int) -> None:
        """Deliveries this process queued for the webhook would go out as it was (its old URL or
        secret, or although it is disabled or gone): they go back to the database instead."""
        if self._on_change is not None:
            await self._on_change(webhook_id)

    def _model(self, row: Row[Any]) -> models.Webhook:
        return _webhook_model(row, self._vault, self._clock())

    # -- checks -----------------------------------------------------------------------------

    def _check_url(self, url: str) -> str:
        url = _check_text("url", url).strip()
        if not url:
            raise InvalidArgumentError("url is empty; give the absolute https:// address of your endpoint")
        if len(url) > MAX_URL_LENGTH:
            raise InvalidArgumentError(f"url is {len(url)} characters; the limit is {MAX_URL_LENGTH}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise InvalidArgumentError(
                f"url {url!r} is malformed ({exc}); use e.g. https://example.com/webhooks"
            ) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"url {url!r} is not an absolute http(s) URL; use e.g. https://example.com/webhooks"
            )
        if parts.username or parts.password:
            raise InvalidArgumentError("url must not contain a user name or password; authenticate by signature")
        if parts.fragment:
            raise InvalidArgumentError("url must not contain a #fragment; receivers never see it")
        if not _valid_host(parts.hostname):
            raise InvalidArgumentError(
                f"url host {parts.hostname!r} is not a valid host name or IP address; check for typos and spaces"
            )
        return url

    async def _check_destination(self, url: str) -> None:
        """Refuse a URL no delivery could ever reach: its host is a blocked address, or a name that
        resolves only to blocked ones (a name that does not resolve yet is accepted)."""
        refusal = await self.sender.check_destination(url)
        if refusal is not None:
            # Named as the argument it is about, like every other refusal of a tool's input.
            raise InvalidArgumentError(refusal if refusal.startswith("url ") else f"url {url} is refused: {refusal}")

    def _check_events(self, names: Sequence[str]) -> list[str]:
        if not names:
            raise InvalidArgumentError(
                "events is empty; subscribe to at least one event type (call get_webhook_events to list them)"
            )
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise InvalidArgumentError(f"events lists {', '.join(duplicates)} more than once; name each once")
        for name in names:
            self.catalog.require_subscribable(name)
        return list(names)

    @staticmethod
    def _check_description(description: str) -> str:
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidArgumentError(
                f"description is {len(description)} characters; the limit is {MAX_DESCRIPTION_LENGTH}"
            )
        return _check_text("description", description).strip()

    async def _row(self, webhook_id: int) -> Row[Any]:
        row = await self.store.get_webhook(webhook_id)
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        return row

    # -- registry ---------------------------------------------------------------------------

    async def list_webhooks(self) -> models.WebhookList:
        hooks = [self._model(row) for row in await self.store.list_webhooks()]
        return models.WebhookList(webhooks=hooks, total=len(hooks))

    async def get_webhook(self, webhook_id: int) -> models.Webhook:
        return self._model(await self._row(webhook_id))

    async def create_webhook(self, url: str, events: Sequence[str], description: str = "") -> models.Webhook:
        checked_url = self._check_url(url)
        checked_events = self._check_events(events)
        checked_description = self._check_description(description)
        await self._check_destination(checked_url)
        now = self._clock()
        row = await self.store.insert_webhook(
            {
                "url": checked_url,
                "events": checked_events,
                "description": checked_description,
                "secret": self._vault.seal(generate_secret()),
                "enabled": True,
                "created_at": now,
                "updated_at": now,
            }
        )
        return self._model(row)

    async def update_webhook(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
    ) -> models.Webhook:
        values: dict[str, Any] = {}
        if url is not None:
            values["url"] = self._check_url(url)
        if events is not None:
            values["events"] = self._check_events(events)
        if description is not None:
            values["description"] = self._check_description(description)
        if not values:
            raise InvalidArgumentError("nothing to update; give at least one of url, events or description")
        if "url" in values:
            await self._check_destination(values["url"])
        values["updated_at"] = self._clock()
        row = await self.store.update_webhook(webhook_id, values)
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        await self._changed(webhook_id)
        return self._model(row)

    async def set_enabled(self, webhook_id: int, enabled: bool, reason: str | None = None) -> models.Webhook:
        row = await self.store.set_enabled(webhook_id, enabled, reason or "disabled by request", self._clock())
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        if enabled and self._on_publish:
            self._on_publish()
        if not enabled:
            await self._changed(webhook_id)
        return self._model(row)

    async def toggle_webhook(self, webhook_id: int) -> models.Webhook:
        row = await self._row(webhook_id)
        return await self.set_enabled(webhook_id, not row.enabled)

    async def delete_webhook(self, webhook_id: int) -> models.DeletedWebhook:
        result = await self.store.delete_webhook(webhook_id)
        if result is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        row, removed_deliveries, removed_attempts = result
        await self._changed(webhook_id)
        return models.DeletedWebhook(
            id=webhook_id,
            deleted=True,
            url=row.url,
            removed_deliveries=removed_deliveries,
            removed_attempts=removed_attempts,
        )

    async def get_secret(self, webhook_id: int) -> models.WebhookSecret:
        row = await self._row(webhook_id)
        return models.WebhookSecret(
            id=row.id,
            secret=self._vault.reveal(row.secret),
            previous_secret_expires_at=models.to_datetime(_rotation_ends(row, self._clock())),
            how_to_verify=VERIFY_HINT,
        )

    async def rotate_secret(self, webhook_id: int, grace_hours: float = DEFAULT_GRACE_HOURS) -> models.RotatedSecret:
        """Issue a new secret; the replaced one keeps signing beside it for ``grace_hours``. Only the
        newest previous secret is kept: rotating again during a grace period drops the older one."""
        if not (math.isfinite(grace_hours) and 0 <= grace_hours <= MAX_GRACE_HOURS):
            raise InvalidArgumentError(
                f"grace_hours must be between 0 (switch at once) and {MAX_GRACE_HOURS:g} (30 days), "
                f"got {grace_hours}; the default {DEFAULT_GRACE_HOURS:g} gives receivers a day to switch"
            )
        secret = generate_secret()
        now = self._clock()
        expires = now + grace_hours * 3600 if grace_hours > 0 else None
        result = await self.store.rotate_secret(webhook_id, self._vault.seal(secret), expires, now)
        if result is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        row, replaced_expiry = result
        await self._changed(webhook_id)
        dropped = replaced_expiry is not None and replaced_expiry > now
        ends = models.to_datetime(expires)
        if ends is None:
            steps = (
                "Requests are signed with the new secret only, from now on: put it in the receiver's "
                "configuration at once (until then its verification fails and deliveries are retried), "
                "then call test_webhook."
            )
        else:
            steps = (
                f"Until {ends.isoformat(timespec='seconds')} every request carries two signatures in "
                "webhook-signature, one per secret, so the receiver accepts it with either. Put the new "
                "secret in the receiver's configuration before then, call test_webhook to check, and "
                "after that only the new secret signs."
            )
        if dropped:
            steps += (
                " The previous secret kept from the earlier rotation (still in its grace period) stopped "
                "signing too: a receiver still on it fails verification now."
            )
        return models.RotatedSecret(
            id=row.id,
            secret=secret,
            previous_secret_expires_at=ends,
            grace_hours=grace_hours,
            dropped_older_secret=dropped,
            next_steps=steps,
        )

    # -- catalog ----------------------------------------------------------------------------

    def list_event_types(self) -> models.EventTypeList:
        types = [
            models.EventTypeInfo(name=t.name, group=t.group, description=t.description)
            for t in self.catalog.subscribable()
        ]
        return models.EventTypeList(event_types=types, total=len(types))

    def sample_payload(self, event: str) -> models.SamplePayload:
        event_type = self.catalog.get(event)
        now = self._clock()
        event_id = "evt_" + "0" * 24 + "sample00"
        body = envelope(event_id, event_type.name, now, event_type.example)
        headers = signed_headers(secret_key(SAMPLE_SECRET), event_id, int(now), body.encode())
        return models.SamplePayload(
            event=event_type.name,
            description=event_type.description,
            body=json.loads(body),
            headers=headers,
            data_schema=event_type.schema,
        )

    # -- test deliveries ----------------------------------------------------------------------

    async def test_webhook(self, webhook_id: int, event: str | None = None) -> models.TestResult:
        row = await self._row(webhook_id)
        event_type = self.catalog.get(event or TEST_EVENT)
        data = dict(event_type.example)
        if event_type.name == TEST_EVENT:
            data["webhook_id"] = webhook_id
        event_id = new_event_id()
        started = self._clock()
        body = envelope(event_id, event_type.name, started, data).encode()
        previous = row.previous_secret if _rotation_ends(row, started) is not None else None
        headers = signed_headers(
            secret_key(self._vault.reveal(row.secret)),
            event_id,
            int(started),
            body,
            None if previous is None else secret_key(self._vault.reveal(previous)),
        )
        outcome = await self.sender.send(row.url, headers, body)
        record = AttemptRecord.of(
            outcome,
            delivery_id=None,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type.name,
            attempt_number=1,
            created_at=started,
        )
        await self.store.record_attempts([record], self._clock())
        latest = await self.store.attempts_page(webhook_id, 1, None, None, True)
        return models.TestResult(
            webhook_id=webhook_id,
            url=row.url,
            event=event_type.name,
            event_id=event_id,
            attempt_id=latest[0].id,
            success=outcome.success,
            status_code=outcome.status_code,
            response_ms=outcome.response_ms,
            error=outcome.error,
            response_excerpt=outcome.response_excerpt,
            webhook_enabled=row.enabled,
        )

    # -- logs and stats -----------------------------------------------------------------------

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

    # -- publishing and redelivery ------------------------------------------------------------

    def _new_event(self, event_type: str, data: Any, idempotency_key: str | None, now: float) -> NewEvent:
        kind = self.catalog.require_subscribable(event_type)
        if not isinstance(data, dict):
            raise InvalidPayloadError(kind.name, ["data must be a JSON object"])
        event_id = new_event_id()
        body = envelope(event_id, kind.name, now, data)  # first: it names a NaN's path exactly
        self.catalog.validate(kind.name, data)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidArgumentError(
                f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}"
            )
        if idempotency_key is not None:
            _check_text("idempotency_key", idempotency_key)
        try:
            size = len(body.encode())
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"data contains {body[exc.start]!r}, an unpaired surrogate that is not valid Unicode; send UTF-8 text"
            ) from exc
        if size > self.settings.max_payload_bytes:
            raise InvalidArgumentError(
                f"event body is {size} bytes; the limit is {self.settings.max_payload_bytes} "
                "(WEBHOOK_MCP_MAX_PAYLOAD_BYTES). Send less data, e.g. ids receivers can look up."
            )
        return NewEvent(event_id, kind.name, body, idempotency_key)

    async def publish(self, event_type: str, data: Any, idempotency_key: str | None = None) -> models.PublishedEvent:
        (result,) = await self.publish_many([(event_type, data, idempotency_key)])
        return result

    async def publish_many(self, items: Sequence[tuple[str, Any, str | None]]) -> list[models.PublishedEvent]:
        """Validate everything first, then store all events and deliveries in one transaction."""
        now = self._clock()
        new = [self._new_event(event_type, data, key, now) for event_type, data, key in items]
        stored = await self.store.publish(new, now, now - self.settings.idempotency_ttl)
        metrics.published(s.type for s in stored if not s.duplicate)
        if self._on_publish and any(s.queued for s in stored):
            self._on_publish()
        return [
            models.PublishedEvent(event_id=s.id, type=s.type, queued=s.queued, duplicate=s.duplicate) for s in stored
        ]

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
