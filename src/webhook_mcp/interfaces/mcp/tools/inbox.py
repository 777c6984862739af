"""Tools on the built-in inbox: open one (or change its answer), read what arrived."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver.context import Context
from pydantic import Field

from webhook_mcp.interfaces.mcp.common import NOT_BOOL, READ, HubSlot, call, writes
from webhook_mcp.service.inboxes import InboxContents, InboxService, OpenedInbox

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer

InboxId = Annotated[str, Field(description="From open_inbox.")]


def register(server: WebhookServer, slot: HubSlot) -> None:
    def inboxes() -> InboxService:
        return InboxService(slot.get().inboxes, slot.service())

    @server.tool(
        description="A temporary webhook url on this server that records requests and answers `status` (500 "
        "rehearses retries). With inbox_id: change its status.",
        annotations=writes(idempotent=True, open_world=False),
    )
    async def open_inbox(
        status: Annotated[int, Field(ge=200, le=599), NOT_BOOL] = 200,
        inbox_id: InboxId | None = None,
    ) -> OpenedInbox:
        return await call(inboxes().open(status, inbox_id))

    @server.tool(
        description="What an inbox received, newest first: headers, body, signature checked in words. "
        "wait_seconds: wait for one more.",
        annotations=READ,
    )
    async def read_inbox(
        inbox_id: InboxId,
        ctx: Context,
        wait_seconds: Annotated[float, Field(ge=0, le=60), NOT_BOOL] = 0,
    ) -> InboxContents:
        if wait_seconds:
            await ctx.report_progress(0, wait_seconds, "waiting for a request")
        return await call(inboxes().read(inbox_id, wait_seconds))
