"""Resources an assistant (or its user) can attach to a conversation: the event catalog, each
event type with what a receiver gets, and each webhook with its configuration, health and recent
failures. Stable URIs; the per-item ones are also templates, so clients can complete them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import Resource as MCPResource
from pydantic import BaseModel

from webhook_mcp.core.errors import WebhookError
from webhook_mcp.interfaces.mcp.common import HubSlot

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer

EVENT_TYPES = "webhooks://event-types"
WEBHOOKS = "webhooks://webhooks"
JSON = "application/json"
RECENT_FAILURES = 10


def event_type_uri(name: str) -> str:
    return f"{EVENT_TYPES}/{name}"


def webhook_uri(webhook_id: int) -> str:
    return f"{WEBHOOKS}/{webhook_id}"


def _json(value: BaseModel | dict[str, Any]) -> str:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return json.dumps(data, indent=2, ensure_ascii=False)


def register(server: WebhookServer, slot: HubSlot) -> None:
    @server.resource(EVENT_TYPES, name="event-types", title="Event catalog", mime_type=JSON)
    async def event_types() -> str:
        return _json(slot.service().list_event_types())

    @server.resource(WEBHOOKS, name="webhooks", title="Webhooks", mime_type=JSON)
    async def webhooks() -> str:
        return _json(await _resource_call(slot.service().list_webhooks()))

    @server.resource(
        EVENT_TYPES + "/{name}",
        name="event-type",
        title="Event type",
        description="An event type: its data schema, an example, and the exact envelope and headers sent.",
        mime_type=JSON,
    )
    async def event_type(name: str) -> str:
        try:
            sample = slot.service().sample_payload(name)
        except WebhookError as exc:
            raise ResourceError(str(exc)) from exc
        return _json({**sample.model_dump(mode="json"), "verify": "webhook_mcp.verify(body, headers, secret)"})

    @server.resource(
        WEBHOOKS + "/{id}",
        name="webhook",
        title="Webhook",
        description="A webhook's configuration, health (delivery statistics) and most recent failures.",
        mime_type=JSON,
    )
    async def webhook(id: str) -> str:
        return _json(await _webhook_report(slot, id))

    server.extra_resources = lambda: _listed(slot)


async def _resource_call(operation: Any) -> Any:
    try:
        return await operation
    except WebhookError as exc:
        raise ResourceError(str(exc)) from exc


async def _webhook_report(slot: HubSlot, id: str) -> dict[str, Any]:
    if not id.isdigit():
        raise ResourceError(f"{WEBHOOKS}/{id} names no webhook; ids are whole numbers (see list_webhooks)")
    service, webhook_id = slot.service(), int(id)
    hook = await _resource_call(service.get_webhook(webhook_id))
    stats = await _resource_call(service.get_stats(webhook_id))
    failures = await _resource_call(service.get_logs(webhook_id, RECENT_FAILURES, None, "failed"))
    return {
        "webhook": hook.model_dump(mode="json"),
        "health": stats.model_dump(mode="json"),
        "recent_failures": [attempt.model_dump(mode="json") for attempt in failures.attempts],
    }


async def _listed(slot: HubSlot) -> list[MCPResource]:
    """One resource per event type and per webhook, beside the two lists."""
    if slot.hub is None:
        return []
    service = slot.service()
    listed = [
        MCPResource(uri=event_type_uri(t.name), name=t.name, description=t.description, mime_type=JSON)
        for t in service.list_event_types().event_types
    ]
    for hook in (await service.list_webhooks()).webhooks:
        listed.append(
            MCPResource(uri=webhook_uri(hook.id), name=f"webhook {hook.id}", description=hook.url, mime_type=JSON)
        )
    return listed
