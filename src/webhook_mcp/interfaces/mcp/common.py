"""What every tool module shares: annotations, argument types, the hub slot and error mapping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BeforeValidator, Field

from webhook_mcp.core.errors import WebhookError
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.storage.base import MAX_WEBHOOK_ID

T = TypeVar("T")

# Tool metadata marking a read-only tool that still hands out something dangerous (a signing key):
# read-only mode leaves it out.
SENSITIVE = "webhook-mcp/sensitive"

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def writes(*, destructive: bool = False, idempotent: bool = False, open_world: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


def _not_a_boolean(value: object) -> object:
    """JSON true and false are never numbers here, though Python counts them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("true/false is not a number")
    return value


# Put last in ``Annotated`` (after ``Field``, or pydantic writes ge/le into the JSON Schema
# as they are): numbers then refuse booleans (and ints fractions); numeric strings still pass.
NOT_BOOL = BeforeValidator(_not_a_boolean)
Hours = Annotated[float, NOT_BOOL]
WebhookId = Annotated[int, Field(ge=1, le=MAX_WEBHOOK_ID, description="Webhook id from list_webhooks."), NOT_BOOL]
EventList = Annotated[list[str], Field(description="Event type names, e.g. ['order.created'].")]


async def call(operation: Awaitable[T]) -> T:
    """Anticipated failures become tool errors whose text tells the assistant what to fix."""
    try:
        return await operation
    except WebhookError as exc:
        raise ToolError(str(exc)) from exc


def allowed_in_read_only(annotations: ToolAnnotations | None, meta: Mapping[str, Any] | None) -> bool:
    """A tool's own annotations decide, so tools added later are classified without a list here."""
    return annotations is not None and annotations.read_only_hint is True and not (meta or {}).get(SENSITIVE)


class HubSlot:
    """The hub the tools use: set by the server's lifespan (or given by an HTTP transport)."""

    hub: Hub | None = None

    def get(self) -> Hub:
        if self.hub is None:
            raise ToolError("the webhook service is not running yet; retry in a moment")
        return self.hub

    def service(self) -> WebhookService:
        return self.get().service


ServiceGetter = Callable[[], WebhookService]
