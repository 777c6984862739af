"""Tools on deliveries: the attempt log, statistics, retrying and replaying dead deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import READ, HubSlot, WebhookId, call, writes

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    _register_reads(server, slot)
    _register_redelivery(server, slot)


def _register_reads(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Delivery attempts of a webhook, newest first: time, event type and id, delivery id, "
        "attempt number, HTTP status, response time, success, error text, response excerpt, and whether it "
        "was a test. Pass next_cursor back as `cursor` for older entries. Use it to find why deliveries "
        "fail. Next: test_webhook, or retry_delivery for a dead delivery.",
        annotations=READ,
    )
    async def get_webhook_logs(
        id: WebhookId,
        limit: Annotated[int, Field(description="Entries per page, 1 to 100.")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
        status: Annotated[
            Literal["all", "success", "failed", "test"], Field(description="Show only these attempts.")
        ] = "all",
    ) -> models.AttemptPage:
        return await call(slot.service().get_logs(id, limit, cursor, status))

    @server.tool(
        description="Delivery statistics of a webhook: attempts, successes, failures, success rate, "
        "average and p95 response time, last success and failure, current failure streak, and deliveries "
        "pending, held (webhook disabled), dead and the next retry time. All time by default, or the last "
        "`window_hours`. Use it to judge a webhook's health; get_webhook_logs shows the details.",
        annotations=READ,
    )
    async def get_webhook_stats(
        id: WebhookId,
        window_hours: Annotated[
            float | None,
            Field(description="Only count attempts from the last this many hours (rounded out to whole hours)."),
        ] = None,
    ) -> models.WebhookStats:
        return await call(slot.service().get_stats(id, window_hours))


def _register_redelivery(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Queue a dead delivery (state failed: every attempt failed) for a fresh round of "
        "attempts. Find delivery ids in get_webhook_logs. If the webhook is disabled it waits until enabled.",
        annotations=writes(open_world=True),
    )
    async def retry_delivery(
        id: Annotated[int, Field(ge=1, le=2**63 - 1, description="The delivery id (delivery_id in get_webhook_logs).")],
    ) -> models.Delivery:
        return await call(slot.service().retry_delivery(id))

    @server.tool(
        description="Queue every dead delivery of a webhook (optionally only those created in the last "
        "`since_hours`) for redelivery, e.g. after fixing an outage at the endpoint. Returns how many.",
        annotations=writes(open_world=True),
    )
    async def replay_failed(
        id: WebhookId,
        since_hours: Annotated[
            float | None, Field(description="Only deliveries created in the last this many hours.")
        ] = None,
    ) -> models.ReplayResult:
        return await call(slot.service().replay_failed(id, since_hours))
