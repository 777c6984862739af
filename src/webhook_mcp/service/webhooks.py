"""Webhooks: registration and its checks, changes, enable/disable, deletion, test deliveries."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from webhook_mcp.core import models
from webhook_mcp.core.catalog import TEST_EVENT
from webhook_mcp.core.errors import InvalidArgumentError, NotFoundError
from webhook_mcp.core.ids import new_event_id
from webhook_mcp.core.signing import generate_secret, secret_key, signed_headers
from webhook_mcp.service.base import ServiceBase, rotation_ends
from webhook_mcp.service.texts import check_text as _check_text
from webhook_mcp.service.texts import envelope
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH

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


class WebhookOperations(ServiceBase):
    """Registering, changing, pausing, deleting and testing webhooks, and the checks on their input."""

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

    async def test_webhook(self, webhook_id: int, event: str | None = None) -> models.TestResult:
        row = await self._row(webhook_id)
        event_type = self.catalog.get(event or TEST_EVENT)
        data = dict(event_type.example)
        if event_type.name == TEST_EVENT:
            data["webhook_id"] = webhook_id
        event_id = new_event_id()
        started = self._clock()
        body = envelope(event_id, event_type.name, started, data).encode()
        previous = row.previous_secret if rotation_ends(row, started) is not None else None
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
