"""Tools on deliveries: the attempt log, statistics, retrying and replaying dead deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import NOT_BOOL, READ, Hours, HubSlot, WebhookId, call, writes

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    _register_reads(server, slot)
    _register_redelivery(server, slot)


def _register_reads(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="A webhook's delivery attempts, newest first: event, delivery_id, status, ms, error in words, "
        "response. next_cursor pages back.",
        annotations=READ,
    )
    async def get_webhook_logs(
        id: WebhookId,
        limit: Annotated[int, Field(description="1 to 100."), NOT_BOOL] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page.")] = None,
        status: Literal["all", "success", "failed", "test"] = "all",
    ) -> models.AttemptPage:
        return await call(slot.service().get_logs(id, limit, cursor, status))

    @server.tool(
        description="A webhook's health: success rate, avg/p95 ms, failure streak, deliveries pending, held, dead and"
        " next retry. Details: get_webhook_logs.",
        annotations=READ,
    )
    async def get_webhook_stats(
        id: WebhookId,
        window_hours: Hours | None = None,
    ) -> models.WebhookStats:
        return await call(slot.service().get_stats(id, window_hours))


def _register_redelivery(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Give a dead delivery (every attempt failed) a fresh round of attempts; ids: get_webhook_logs.",
        annotations=writes(open_world=True),
    )
    async def retry_delivery(
        id: Annotated[int, Field(ge=1, le=2**63 - 1, description="delivery_id from get_webhook_logs."), NOT_BOOL],
    ) -> models.Delivery:
        return await call(slot.service().retry_delivery(id))

    @server.tool(
        description="Redeliver every dead delivery of a webhook (or those of the last since_hours) after an outage.",
        annotations=writes(open_world=True),
    )
    async def replay_failed(
        id: WebhookId,
        since_hours: Hours | None = None,
    ) -> models.ReplayResult:
        return await call(slot.service().replay_failed(id, since_hours))
