"""The dashboard's actions (POST, confirmed on the page, CSRF-checked by ``Site.action``): each
calls the same ``WebhookService`` method as the MCP tool of the same purpose."""

from __future__ import annotations

import math

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.interfaces.web.site import DASHBOARD_PATH, Done, Site
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.secrets import DEFAULT_GRACE_HOURS


def _hours(form: FormData, name: str) -> float | None:
    text = form.get(name)
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(f"{name.replace('_', ' ')} must be a number of hours, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name.replace('_', ' ')} must be a finite number of hours")
    return value


def _webhook_id(request: Request) -> int:
    return int(request.path_params["webhook_id"])


class Actions:
    def __init__(self, site: Site) -> None:
        self.site = site

    @property
    def service(self) -> WebhookService:
        return self.site.service

    async def enable(self, request: Request, form: FormData) -> Done:
        hook = await self.service.set_enabled(_webhook_id(request), True)
        return Done(f"Webhook {hook.id} is enabled: held deliveries go out again and new events are queued for it.")

    async def disable(self, request: Request, form: FormData) -> Done:
        hook = await self.service.set_enabled(_webhook_id(request), False, "disabled from the dashboard")
        return Done(
            f"Webhook {hook.id} is disabled: its waiting deliveries are held until it is enabled again, and "
            "events published meanwhile are not queued for it."
        )

    async def test(self, request: Request, form: FormData) -> Done:
        event = form.get("event")
        result = await self.service.test_webhook(
            _webhook_id(request), event if isinstance(event, str) and event else None
        )
        location = f"{DASHBOARD_PATH}/attempts/{result.attempt_id}"
        if result.success:
            return Done(
                f"Test {result.event} delivered: {result.status_code} in {result.response_ms:.0f} ms.",
                location=location,
            )
        reason = result.error or f"the receiver answered {result.status_code}"
        return Done(f"Test {result.event} failed: {reason}.", "error", location)

    async def replay(self, request: Request, form: FormData) -> Done:
        since = _hours(form, "since_hours")
        result = await self.service.replay_failed(_webhook_id(request), since)
        if not result.requeued:
            scope = "" if since is None else f" from the last {since:g} hours"
            return Done(f"No dead deliveries{scope} to replay.", "info")
        held = " They are held until the webhook is enabled." if result.held else " They go out now."
        return Done(f"Requeued {result.requeued} dead deliveries.{held}")

    async def rotate(self, request: Request, form: FormData) -> Done:
        grace = _hours(form, "grace_hours")
        rotated = await self.service.rotate_secret(
            _webhook_id(request), DEFAULT_GRACE_HOURS if grace is None else grace
        )
        return Done(f"New secret issued. {rotated.next_steps} Use “Show secret” to copy it.")

    async def reveal_secret(self, request: Request, form: FormData) -> Response:
        """The full secret, on a page of its own that is never cached (as get_webhook_secret)."""
        webhook_id = _webhook_id(request)
        secret = await self.service.get_secret(webhook_id)
        webhook = await self.service.get_webhook(webhook_id)
        return self.site.render(request, "secret.html", secret=secret, webhook=webhook)

    async def retry(self, request: Request, form: FormData) -> Done:
        delivery = await self.service.retry_delivery(int(request.path_params["delivery_id"]))
        state = "queued to go out now" if delivery.state == "pending" else "held until the webhook is enabled"
        return Done(f"Delivery {delivery.id} is {state}, with a fresh set of attempts.")
