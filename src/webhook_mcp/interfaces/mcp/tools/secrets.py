"""Tools on signing secrets: show one, rotate one with a grace period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.common import READ, SENSITIVE, HubSlot, WebhookId, call, writes
from webhook_mcp.service.operations import DEFAULT_GRACE_HOURS

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer


def register(server: WebhookServer, slot: HubSlot) -> None:
    @server.tool(
        description="Show the webhook's full signing secret (whsec_...) and how to verify signatures. "
        "Give it to the receiving endpoint so it can reject forged requests. After rotate_webhook_secret "
        "it shows the new secret and until when the previous one still signs too.",
        annotations=READ,
        meta={SENSITIVE: True},
    )
    async def get_webhook_secret(id: WebhookId) -> models.WebhookSecret:
        return await call(slot.service().get_secret(id))

    @server.tool(
        description="Replace a webhook's signing secret with a new one, e.g. when the old one may have "
        "leaked or on a schedule. The old secret keeps signing beside the new one for `grace_hours` "
        "(default 24, 0 to 720; 0 switches at once): meanwhile every request carries two signatures, so the "
        "receiver verifies with either secret and no delivery is lost while it is updated. Returns the new "
        "secret (shown whole here and by get_webhook_secret), when the old one stops signing, and next "
        "steps. Rotating again during a grace period keeps only the latest old secret. Next: give the new "
        "secret to the receiver, then test_webhook.",
        annotations=writes(),
    )
    async def rotate_webhook_secret(
        id: WebhookId,
        grace_hours: Annotated[
            float,
            Field(description="Hours the old secret keeps signing beside the new one, 0 to 720 (0: switch now)."),
        ] = DEFAULT_GRACE_HOURS,
    ) -> models.RotatedSecret:
        return await call(slot.service().rotate_secret(id, grace_hours))
