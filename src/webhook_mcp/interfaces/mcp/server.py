"""The MCP face of the service: parse arguments, call the service, return its model.

Tool descriptions are written for an AI assistant: what the tool does, when to use it, what
comes back and what to call next."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field

from webhook_mcp import __version__
from webhook_mcp.core import models
from webhook_mcp.core.errors import WebhookError
from webhook_mcp.core.settings import Settings
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import DEFAULT_GRACE_HOURS, WebhookService
from webhook_mcp.storage.base import MAX_WEBHOOK_ID

T = TypeVar("T")
logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Manage the shop's outgoing webhooks: endpoints that receive signed JSON events (orders, payments,
customers, products, inventory). Typical flows: get_webhook_events -> create_webhook ->
get_webhook_secret -> test_webhook -> get_webhook_logs to set one up; list_webhooks ->
get_webhook_stats -> get_webhook_logs -> test_webhook -> update_webhook to debug one;
toggle_webhook to pause and resume; rotate_webhook_secret to replace a secret without losing
deliveries. Every request is signed per Standard Webhooks (webhook-id, webhook-timestamp,
webhook-signature headers) and retried on failure."""

READ_ONLY_INSTRUCTIONS = """\
Look at the shop's outgoing webhooks: endpoints that receive signed JSON events (orders, payments,
customers, products, inventory). This server is read-only: it cannot create, change, test or delete
webhooks, publish events or show signing secrets. Typical flows: list_webhooks -> get_webhook_stats ->
get_webhook_logs to see why one fails; get_webhook_events -> get_webhook_sample_payload to see what
receivers get. Every request is signed per Standard Webhooks and retried on failure."""

# Tool metadata marking a read-only tool that still hands out something dangerous (a signing key):
# read-only mode leaves it out.
SENSITIVE = "webhook-mcp/sensitive"

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _writes(*, destructive: bool = False, idempotent: bool = False, open_world: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


WebhookId = Annotated[
    int, Field(ge=1, le=MAX_WEBHOOK_ID, description="The webhook's id, from list_webhooks or create_webhook.")
]
EventList = Annotated[
    list[str], Field(description="Event type names to subscribe to, e.g. ['order.created', 'order.updated'].")
]


async def _call(operation: Awaitable[T]) -> T:
    """Anticipated failures become tool errors whose text tells the assistant what to fix."""
    try:
        return await operation
    except WebhookError as exc:
        raise ToolError(str(exc)) from exc


def allowed_in_read_only(annotations: ToolAnnotations | None, meta: Mapping[str, Any] | None) -> bool:
    """A tool's own annotations decide, so tools added later are classified without a list here."""
    return annotations is not None and annotations.read_only_hint is True and not (meta or {}).get(SENSITIVE)


class WebhookServer(MCPServer[Any]):
    """In read-only mode, registering a tool that may change something (or is ``SENSITIVE``) leaves
    it out; calling it then says why instead of "unknown tool"."""

    def __init__(self, *args: Any, read_only: bool = False, **kwargs: Any) -> None:
        self.read_only = read_only
        self.withheld: set[str] = set()
        super().__init__(*args, **kwargs)

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.read_only:
            given = inspect.signature(MCPServer.add_tool).bind(self, fn, *args, **kwargs).arguments
            if not allowed_in_read_only(given.get("annotations"), given.get("meta")):
                self.withheld.add(given.get("name") or fn.__name__)
                return
        super().add_tool(fn, *args, **kwargs)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if name in self.withheld:
            raise ToolError(
                f"{name} is not available: this server is read-only (WEBHOOK_MCP_READ_ONLY) and only looks at "
                "webhooks; ask the operator to make the change"
            )
        return await super().call_tool(name, arguments, context)


class _HubSlot:
    hub: Hub | None = None

    def get(self) -> Hub:
        if self.hub is None:
            raise ToolError("the webhook service is not running yet; retry in a moment")
        return self.hub


def create_server(settings: Settings | None = None, *, hub: Hub | None = None) -> WebhookServer:
    """Build the MCP server. Without ``hub`` its lifespan opens one (database, sender,
    dispatcher) from ``settings``; with one, the caller owns it (HTTP transports do).
    ``read_only`` in the settings registers only the tools that change nothing."""
    slot = _HubSlot()
    config = hub.settings if hub is not None else settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        if hub is not None:
            slot.hub = hub
            yield {}
            return
        async with Hub.open(config) as opened:
            slot.hub = opened
            try:
                yield {}
            finally:
                slot.hub = None

    server = WebhookServer(
        "webhook-mcp",
        title="Webhook management",
        instructions=READ_ONLY_INSTRUCTIONS if config.read_only else INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        read_only=config.read_only,
    )

    def svc() -> WebhookService:
        return slot.get().service

    @server.tool(
        description="List every configured webhook with its URL, subscribed events, enabled state "
        "(and why it was disabled, if it was), and failure streak. Use it first to find a webhook's id. "
        "Next: get_webhook_stats or get_webhook_logs for one that is failing.",
        annotations=READ,
    )
    async def list_webhooks() -> models.WebhookList:
        return await _call(svc().list_webhooks())

    @server.tool(
        description="List the event types a webhook can subscribe to (name, group, description), e.g. "
        "order.created or payment.completed. Use before create_webhook or update_webhook to pick events. "
        "Next: get_webhook_sample_payload to see what one looks like.",
        annotations=READ,
    )
    async def get_webhook_events() -> models.EventTypeList:
        return svc().list_event_types()

    @server.tool(
        description="Show one webhook: URL, events, description, enabled state and disabled reason, "
        "health (consecutive failures, last success/failure). The signing secret is masked; "
        "get_webhook_secret shows it.",
        annotations=READ,
    )
    async def get_webhook(id: WebhookId) -> models.Webhook:
        return await _call(svc().get_webhook(id))

    @server.tool(
        description="Register a new endpoint to receive events. `url` must be an absolute https:// (or "
        "http://) URL on a public address; `events` lists event types from get_webhook_events. The webhook "
        "starts enabled with a fresh signing secret. Returns the webhook with its id. "
        "Next: get_webhook_secret (so the receiver can verify signatures), then test_webhook.",
        annotations=_writes(),
    )
    async def create_webhook(
        url: Annotated[str, Field(description="Absolute http(s) URL of the receiving endpoint.")],
        events: EventList,
        description: Annotated[str, Field(description="Optional note on what this endpoint is for.")] = "",
    ) -> models.Webhook:
        return await _call(svc().create_webhook(url, events, description))

    @server.tool(
        description="Change a webhook's url, events (replaces the whole list) or description; omitted "
        "fields stay as they are. Use it when an endpoint moved or needs other events. The secret is kept. "
        "Next: test_webhook to check the new URL.",
        annotations=_writes(idempotent=True),
    )
    async def update_webhook(
        id: WebhookId,
        url: Annotated[str | None, Field(description="New endpoint URL.")] = None,
        events: Annotated[list[str] | None, Field(description="New full list of event types.")] = None,
        description: Annotated[str | None, Field(description="New description.")] = None,
    ) -> models.Webhook:
        return await _call(svc().update_webhook(id, url=url, events=events, description=description))

    @server.tool(
        description="Delete a webhook for good, with its pending deliveries and delivery logs. Cannot be "
        "undone; to pause deliveries instead, use toggle_webhook.",
        annotations=_writes(destructive=True),
    )
    async def delete_webhook(id: WebhookId) -> models.DeletedWebhook:
        return await _call(svc().delete_webhook(id))

    @server.tool(
        description="Send a signed test event to the webhook's URL right now and wait for the answer "
        "(bounded by the delivery timeout). Works on disabled webhooks too, to check an endpoint before "
        "re-enabling it. Returns success, HTTP status, response time, a response excerpt and, on failure, "
        "the reason in words (connection refused, DNS failure, timeout, TLS error, HTTP 5xx...). "
        "The attempt is recorded in the logs as a test. Default event: webhook.test.",
        annotations=_writes(open_world=True),
    )
    async def test_webhook(
        id: WebhookId,
        event: Annotated[
            str | None, Field(description="Event type whose sample payload to send instead of webhook.test.")
        ] = None,
    ) -> models.TestResult:
        return await _call(svc().test_webhook(id, event))

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
            return svc().sample_payload(event)
        except WebhookError as exc:
            raise ToolError(str(exc)) from exc

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
        return await _call(svc().get_logs(id, limit, cursor, status))

    @server.tool(
        description="Show the webhook's full signing secret (whsec_...) and how to verify signatures. "
        "Give it to the receiving endpoint so it can reject forged requests. After rotate_webhook_secret "
        "it shows the new secret and until when the previous one still signs too.",
        annotations=READ,
        meta={SENSITIVE: True},
    )
    async def get_webhook_secret(id: WebhookId) -> models.WebhookSecret:
        return await _call(svc().get_secret(id))

    @server.tool(
        description="Replace a webhook's signing secret with a new one, e.g. when the old one may have "
        "leaked or on a schedule. The old secret keeps signing beside the new one for `grace_hours` "
        "(default 24, 0 to 720; 0 switches at once): meanwhile every request carries two signatures, so the "
        "receiver verifies with either secret and no delivery is lost while it is updated. Returns the new "
        "secret (shown whole here and by get_webhook_secret), when the old one stops signing, and next "
        "steps. Rotating again during a grace period keeps only the latest old secret. Next: give the new "
        "secret to the receiver, then test_webhook.",
        annotations=_writes(),
    )
    async def rotate_webhook_secret(
        id: WebhookId,
        grace_hours: Annotated[
            float,
            Field(description="Hours the old secret keeps signing beside the new one, 0 to 720 (0: switch now)."),
        ] = DEFAULT_GRACE_HOURS,
    ) -> models.RotatedSecret:
        return await _call(svc().rotate_secret(id, grace_hours))

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
        return await _call(svc().get_stats(id, window_hours))

    @server.tool(
        description="Enable a disabled webhook or disable an enabled one; returns the new state. While "
        "disabled, pending deliveries are held and new events are not queued for it; on re-enable, held "
        "deliveries resume. Use it rather than delete_webhook for maintenance. Next after re-enabling: "
        "test_webhook.",
        annotations=_writes(),
    )
    async def toggle_webhook(id: WebhookId) -> models.Webhook:
        return await _call(svc().toggle_webhook(id))

    @server.tool(
        description="Queue a dead delivery (state failed: every attempt failed) for a fresh round of "
        "attempts. Find delivery ids in get_webhook_logs. If the webhook is disabled it waits until enabled.",
        annotations=_writes(open_world=True),
    )
    async def retry_delivery(
        id: Annotated[int, Field(ge=1, le=2**63 - 1, description="The delivery id (delivery_id in get_webhook_logs).")],
    ) -> models.Delivery:
        return await _call(svc().retry_delivery(id))

    @server.tool(
        description="Queue every dead delivery of a webhook (optionally only those created in the last "
        "`since_hours`) for redelivery, e.g. after fixing an outage at the endpoint. Returns how many.",
        annotations=_writes(open_world=True),
    )
    async def replay_failed(
        id: WebhookId,
        since_hours: Annotated[
            float | None, Field(description="Only deliveries created in the last this many hours.")
        ] = None,
    ) -> models.ReplayResult:
        return await _call(svc().replay_failed(id, since_hours))

    @server.tool(
        description="Publish a real shop event: it is stored and delivered (signed, with retries) to EVERY "
        "enabled webhook subscribed to its type, not only one. `data` must match the event type's schema "
        "(see get_webhook_sample_payload). To try a single endpoint use test_webhook instead.",
        annotations=_writes(open_world=True),
    )
    async def send_event(
        event: Annotated[str, Field(description="Event type name, e.g. order.created.")],
        data: Annotated[dict[str, Any], Field(description="The event's data object.")],
        idempotency_key: Annotated[
            str | None, Field(description="Same key within 24 h returns the first event, queues nothing new.")
        ] = None,
    ) -> models.PublishedEvent:
        return await _call(svc().publish(event, data, idempotency_key))

    return server
