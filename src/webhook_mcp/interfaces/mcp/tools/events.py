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
        description="List the event types a webhook can subscribe to (name, group, description), e.g. "
        "order.created or payment.completed. Use before create_webhook or update_webhook to pick events. "
        "Next: get_webhook_sample_payload to see what one looks like.",
        annotations=READ,
    )
    async def get_webhook_events() -> models.EventTypeList:
        return slot.service().list_event_types()

    @server.tool(
        description="Show the exact JSON body a receiver gets for an event type (envelope with id, type, "
        "timestamp and data), the headers sent with it, and the JSON Schema of `data`. Use it to build or "
        "check a webhook handler before going live.",
        annotations=READ,
    )
    async def get_webhook_sample_payload(
        event: Annotated[str, Field(description="Event type name, e.g. order.created.")],
    ) -> models.SamplePayload:
        try:
            return slot.service().sample_payload(event)
        except WebhookError as exc:
            raise ToolError(str(exc)) from exc


def _register_publish(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Publish a real shop event: it is stored and delivered (signed, with retries) to EVERY "
        "enabled webhook subscribed to its type, not only one. `data` must match the event type's schema "
        "(see get_webhook_sample_payload). To try a single endpoint use test_webhook instead.",
        annotations=writes(open_world=True),
    )
    async def send_event(
        event: Annotated[str, Field(description="Event type name, e.g. order.created.")],
        data: Annotated[dict[str, Any], Field(description="The event's data object.")],
        idempotency_key: Annotated[
            str | None, Field(description="Same key within 24 h returns the first event, queues nothing new.")
        ] = None,
    ) -> models.PublishedEvent:
        return await call(slot.service().publish(event, data, idempotency_key))
