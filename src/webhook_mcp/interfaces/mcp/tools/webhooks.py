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
        description="Every webhook: id, url, events, enabled (disabled_reason if not), consecutive_failures, "
        "last success/failure. Start here to find an id; for a failing one, next get_webhook_stats.",
        annotations=READ,
    )
    async def list_webhooks() -> models.WebhookList:
        return await call(slot.service().list_webhooks())

    @server.tool(
        description="One webhook: url, events, description, enabled state and why not, health (failure streak, "
        "last success/failure). secret_hint masks the secret; get_webhook_secret shows it.",
        annotations=READ,
    )
    async def get_webhook(id: WebhookId) -> models.Webhook:
        return await call(slot.service().get_webhook(id))


def _register_changes(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Register an endpoint for events (names from get_webhook_events). The url must be public "
        "http(s), or an open_inbox url to try things out. Starts enabled with a new signing secret. "
        "Next: get_webhook_secret for the receiver, then test_webhook.",
        annotations=writes(),
    )
    async def create_webhook(
        url: Annotated[str, Field(description="Absolute http(s) URL.")],
        events: EventList,
        description: Annotated[str, Field(description="What the endpoint is for.")] = "",
    ) -> models.Webhook:
        return await call(slot.service().create_webhook(url, events, description))

    @server.tool(
        description="Change a webhook's url, events (the whole new list) or description; what is left out "
        "stays, the secret too. Next: test_webhook to check a new url.",
        annotations=writes(idempotent=True),
    )
    async def update_webhook(
        id: WebhookId,
        url: Annotated[str | None, Field(description="New url.")] = None,
        events: Annotated[list[str] | None, Field(description="New full list.")] = None,
        description: str | None = None,
    ) -> models.Webhook:
        return await call(slot.service().update_webhook(id, url=url, events=events, description=description))

    @server.tool(
        description="Delete a webhook for good, with its pending deliveries and logs; cannot be undone. "
        "To pause it instead: toggle_webhook.",
        annotations=writes(destructive=True),
    )
    async def delete_webhook(id: WebhookId) -> models.DeletedWebhook:
        return await call(slot.service().delete_webhook(id))

    @server.tool(
        description="Disable an enabled webhook or enable a disabled one; returns it. While disabled its "
        "deliveries are held and resume on enable. Next after enabling: test_webhook.",
        annotations=writes(),
    )
    async def toggle_webhook(id: WebhookId) -> models.Webhook:
        return await call(slot.service().toggle_webhook(id))


def _register_test(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Send one signed test event (webhook.test, or a sample of `event`) to the url now, also "
        "when disabled, and wait for the answer (at most the delivery timeout). Returns success, status, "
        "time, response excerpt and why it failed in words; logged as a test.",
        annotations=writes(open_world=True),
    )
    async def test_webhook(
        id: WebhookId,
        event: Annotated[str | None, Field(description="Event type whose sample to send.")] = None,
    ) -> models.TestResult:
        return await call(slot.service().test_webhook(id, event))
