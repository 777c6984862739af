"""Tools on webhooks themselves: list, show, create, change, delete, pause, test."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp.server.mcpserver.context import Context

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import (
    READ,
    EventList,
    HubSlot,
    WebhookId,
    call,
    resources_changed,
    with_progress,
    writes,
)

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    _register_reads(server, slot)
    _register_changes(server, slot)
    _register_test(server, slot)


def _register_reads(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Every webhook with its id, url, events, enabled state and health. Start here; for a failing one,"
        " get_webhook_stats next.",
        annotations=READ,
    )
    async def list_webhooks() -> models.WebhookList:
        return await call(slot.service().list_webhooks())

    @server.tool(
        description="One webhook: url, events, description, enabled (disabled_reason if not), failure streak, last "
        "success/failure.",
        annotations=READ,
    )
    async def get_webhook(id: WebhookId) -> models.Webhook:
        return await call(slot.service().get_webhook(id))


def _register_changes(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Register an endpoint (public http(s) url, or an open_inbox url to try things) for event types "
        "from get_webhook_events. Next: get_webhook_secret, test_webhook.",
        annotations=writes(),
    )
    async def create_webhook(
        url: str,
        events: EventList,
        ctx: Context,
        description: str = "",
    ) -> models.Webhook:
        created = await call(slot.service().create_webhook(url, events, description))
        await resources_changed(ctx, created.id)
        return created

    @server.tool(
        description="Change a webhook's url, events (the whole new list) or description; the rest stays, secret too. "
        "Next: test_webhook.",
        annotations=writes(idempotent=True),
    )
    async def update_webhook(
        id: WebhookId,
        ctx: Context,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
    ) -> models.Webhook:
        updated = await call(slot.service().update_webhook(id, url=url, events=events, description=description))
        await resources_changed(ctx, id)
        return updated

    @server.tool(
        description="Delete a webhook for good, with its pending deliveries and logs. To pause one instead: "
        "toggle_webhook.",
        annotations=writes(destructive=True),
    )
    async def delete_webhook(id: WebhookId, ctx: Context) -> models.DeletedWebhook:
        deleted = await call(slot.service().delete_webhook(id))
        await resources_changed(ctx, id)
        return deleted

    @server.tool(
        description="Disable an enabled webhook or enable a disabled one. While disabled its deliveries wait; on "
        "enable they go out.",
        annotations=writes(),
    )
    async def toggle_webhook(id: WebhookId, ctx: Context) -> models.Webhook:
        toggled = await call(slot.service().toggle_webhook(id))
        await resources_changed(ctx, id)
        return toggled


def _register_test(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Send one signed test event (webhook.test, or a sample of `event`) now, even if disabled; returns"
        " status, time, response and why it failed.",
        annotations=writes(open_world=True),
    )
    async def test_webhook(
        id: WebhookId,
        ctx: Context,
        event: str | None = None,
    ) -> models.TestResult:
        # Never longer than one attempt may take, plus a second for recording it.
        limit = slot.get().settings.delivery_timeout + 1
        return await call(with_progress(ctx, slot.service().test_webhook(id, event), limit, "waiting for the endpoint"))
