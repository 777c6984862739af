"""Tools on signing secrets: show one, rotate one with a grace period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import READ, SENSITIVE, Hours, HubSlot, WebhookId, call, writes
from webhook_mcp.service.secrets import DEFAULT_GRACE_HOURS

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="The webhook's signing secret (whsec_...) and how to verify signatures: give it to the receiver "
        "so it rejects forgeries.",
        annotations=READ,
        meta={SENSITIVE: True},
    )
    async def get_webhook_secret(id: WebhookId) -> models.WebhookSecret:
        return await call(slot.service().get_secret(id))

    @server.tool(
        description="Replace a webhook's signing secret; the old one signs beside it for grace_hours, so nothing is "
        "lost. Next: update the receiver.",
        annotations=writes(),
    )
    async def rotate_webhook_secret(
        id: WebhookId,
        grace_hours: Annotated[Hours, Field(description="0 to 720; 0 switches now.")] = DEFAULT_GRACE_HOURS,
    ) -> models.RotatedSecret:
        return await call(slot.service().rotate_secret(id, grace_hours))
