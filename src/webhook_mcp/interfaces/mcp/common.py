"""What every tool module shares: annotations, argument types, the hub slot and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import AfterValidator, BeforeValidator, Field

from webhook_mcp.core.errors import WebhookError
from webhook_mcp.interfaces.acting import service_for_caller
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.storage.base import MAX_WEBHOOK_ID

T = TypeVar("T")

# Tool metadata marking a read-only tool that still hands out something dangerous (a signing key):
# read-only mode leaves it out.
SENSITIVE = "webhook-mcp/sensitive"

# Hints that only restate the protocol's defaults are left out (every tool's annotations travel in
# each tools/list): a read-only tool's destructive and idempotent hints mean nothing, a write is
# what a tool without read_only_hint is, and not idempotent is the default.
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def writes(*, destructive: bool = False, idempotent: bool = False, open_world: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        destructive_hint=destructive, idempotent_hint=True if idempotent else None, open_world_hint=open_world
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


def _stored_id(value: int) -> int:
    if value > MAX_WEBHOOK_ID:
        raise ValueError(f"no webhook id is above {MAX_WEBHOOK_ID}")
    return value


# The upper bound is checked, not advertised: it says nothing an assistant needs.
WebhookId = Annotated[int, Field(ge=1), NOT_BOOL, AfterValidator(_stored_id)]
EventList = Annotated[list[str], Field(description="Event type names, e.g. ['order.created'].")]


async def call(operation: Awaitable[T]) -> T:
    """Anticipated failures become tool errors whose text tells the assistant what to fix."""
    try:
        return await operation
    except WebhookError as exc:
        raise ToolError(str(exc)) from exc


PROGRESS_EVERY = 0.5  # seconds between progress notifications while waiting on the network


async def with_progress(ctx: Context[Any, Any], operation: Awaitable[T], seconds: float, message: str) -> T:
    """Run ``operation`` for at most ``seconds``, reporting progress meanwhile (when the client
    sent a progress token; otherwise the reports cost nothing)."""
    task = asyncio.ensure_future(operation)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(seconds):
            await ctx.report_progress(0, seconds, message)
            while True:
                done, _ = await asyncio.wait({task}, timeout=PROGRESS_EVERY)
                if done:
                    return task.result()
                await ctx.report_progress(round(loop.time() - started, 1), seconds, message)
    except TimeoutError:
        raise ToolError(f"no answer within {seconds:g} s; the endpoint is too slow or unreachable") from None
    finally:
        task.cancel()


async def resources_changed(ctx: Context[Any, Any], webhook_id: int) -> None:
    """Subscribers hear that the webhook list, and this webhook's resource, changed."""
    with contextlib.suppress(Exception):  # no subscription bus outside a request: nothing to tell
        await ctx.notify_resources_changed()
        await ctx.notify_resource_updated(f"webhooks://webhooks/{webhook_id}")


def allowed_in_read_only(annotations: ToolAnnotations | None, meta: Mapping[str, Any] | None) -> bool:
    """A tool's own annotations decide, so tools added later are classified without a list here."""
    return annotations is not None and annotations.read_only_hint is True and not (meta or {}).get(SENSITIVE)


class HubSlot:
    """The hub the tools use: set by the server's lifespan (or given by an HTTP transport), and the
    tenant a server started for one acts for when the request itself names none."""

    hub: Hub | None = None
    tenant_id: int | None = None

    def get(self) -> Hub:
        if self.hub is None:
            raise ToolError("the webhook service is not running yet; retry in a moment")
        return self.hub

    def service(self) -> WebhookService:
        """The service as the calling request may see it (one tenant's, for a tenant's caller)."""
        service = service_for_caller(self.get().service)
        if service.tenant_id is None and self.tenant_id is not None:
            service = service.for_tenant(self.tenant_id)
        return service


ServiceGetter = Callable[[], WebhookService]
