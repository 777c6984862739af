"""Tools on webhooks themselves: list, show, create, change, delete, pause, test."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import READ, EventList, HubSlot, WebhookId, call, writes

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    _register_reads(server, slot)
    _register_changes(server, slot)
    _register_test(server, slot)


def _register_reads(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="List every configured webhook with its URL, subscribed events, enabled state "
        "(and why it was disabled, if it was), and failure streak. Use it first to find a webhook's id. "
        "Next: get_webhook_stats or get_webhook_logs for one that is failing.",
        annotations=READ,
    )
    async def list_webhooks() -> models.WebhookList:
        return await call(slot.service().list_webhooks())

    @server.tool(
        description="Show one webhook: URL, events, description, enabled state and disabled reason, "
        "health (consecutive failures, last success/failure). The signing secret is masked; "
        "get_webhook_secret shows it.",
        annotations=READ,
    )
    async def get_webhook(id: WebhookId) -> models.Webhook:
        return await call(slot.service().get_webhook(id))


def _register_changes(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Register a new endpoint to receive events. `url` must be an absolute https:// (or "
        "http://) URL on a public address; `events` lists event types from get_webhook_events. The webhook "
        "starts enabled with a fresh signing secret. Returns the webhook with its id. "
        "Next: get_webhook_secret (so the receiver can verify signatures), then test_webhook.",
        annotations=writes(),
    )
    async def create_webhook(
        url: Annotated[str, Field(description="Absolute http(s) URL of the receiving endpoint.")],
        events: EventList,
        description: Annotated[str, Field(description="Optional note on what this endpoint is for.")] = "",
    ) -> models.Webhook:
        return await call(slot.service().create_webhook(url, events, description))

    @server.tool(
        description="Change a webhook's url, events (replaces the whole list) or description; omitted "
        "fields stay as they are. Use it when an endpoint moved or needs other events. The secret is kept. "
        "Next: test_webhook to check the new URL.",
        annotations=writes(idempotent=True),
    )
    async def update_webhook(
        id: WebhookId,
        url: Annotated[str | None, Field(description="New endpoint URL.")] = None,
        events: Annotated[list[str] | None, Field(description="New full list of event types.")] = None,
        description: Annotated[str | None, Field(description="New description.")] = None,
    ) -> models.Webhook:
        return await call(slot.service().update_webhook(id, url=url, events=events, description=description))

    @server.tool(
        description="Delete a webhook for good, with its pending deliveries and delivery logs. Cannot be "
        "undone; to pause deliveries instead, use toggle_webhook.",
        annotations=writes(destructive=True),
    )
    async def delete_webhook(id: WebhookId) -> models.DeletedWebhook:
        return await call(slot.service().delete_webhook(id))

    @server.tool(
        description="Enable a disabled webhook or disable an enabled one; returns the new state. While "
        "disabled, pending deliveries are held and new events are not queued for it; on re-enable, held "
        "deliveries resume. Use it rather than delete_webhook for maintenance. Next after re-enabling: "
        "test_webhook.",
        annotations=writes(),
    )
    async def toggle_webhook(id: WebhookId) -> models.Webhook:
        return await call(slot.service().toggle_webhook(id))


def _register_test(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Send a signed test event to the webhook's URL right now and wait for the answer "
        "(bounded by the delivery timeout). Works on disabled webhooks too, to check an endpoint before "
        "re-enabling it. Returns success, HTTP status, response time, a response excerpt and, on failure, "
        "the reason in words (connection refused, DNS failure, timeout, TLS error, HTTP 5xx...). "
        "The attempt is recorded in the logs as a test. Default event: webhook.test.",
        annotations=writes(open_world=True),
    )
    async def test_webhook(
        id: WebhookId,
        event: Annotated[
            str | None, Field(description="Event type whose sample payload to send instead of webhook.test.")
        ] = None,
    ) -> models.TestResult:
        return await call(slot.service().test_webhook(id, event))
