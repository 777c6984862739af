"""Tools on the event catalog and on publishing events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.core.errors import WebhookError
from webhook_mcp.interfaces.mcp.common import READ, HubSlot, call, writes

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    _register_catalog(server, slot)
    _register_publish(server, slot)


def _register_catalog(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Event types webhooks subscribe to (name, group, description), e.g. order.created; "
        "get_webhook_sample_payload shows one.",
        annotations=READ,
    )
    async def get_webhook_events() -> models.EventTypeList:
        return slot.service().list_event_types()

    @server.tool(
        description="The exact JSON body, headers and data schema a receiver gets for an event type: what a handler "
        "must accept.",
        annotations=READ,
    )
    async def get_webhook_sample_payload(
        event: Annotated[str, Field(description="e.g. order.created")],
    ) -> models.SamplePayload:
        try:
            return slot.service().sample_payload(event)
        except WebhookError as exc:
            raise ToolError(str(exc)) from exc


def _register_publish(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Publish a real event to EVERY enabled webhook subscribed to its type (signed, retried). "
        "For one endpoint: test_webhook.",
        annotations=writes(open_world=True),
    )
    async def send_event(
        event: Annotated[str, Field(description="e.g. order.created")],
        data: dict[str, Any],
        idempotency_key: Annotated[str | None, Field(description="Same key within 24 h: sent once.")] = None,
    ) -> models.PublishedEvent:
        return await call(slot.service().publish(event, data, idempotency_key))
