"""The MCP face of the service: the server class and its assembly from the tool modules.

Tool descriptions are written for an AI assistant: what the tool does, when to use it, what
comes back and what to call next."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types import Resource as MCPResource
from pydantic import ValidationError

from webhook_mcp import __version__
from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.mcp.arguments import argument_error
from webhook_mcp.interfaces.mcp.common import SENSITIVE, HubSlot, allowed_in_read_only
from webhook_mcp.interfaces.mcp.schemas import compact, output_shape
from webhook_mcp.service.hub import Hub

__all__ = ["SENSITIVE", "WebhookServer", "allowed_in_read_only", "create_server"]

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


class WebhookServer(MCPServer[Any]):
    """In read-only mode, registering a tool that may change something (or is ``SENSITIVE``) leaves
    it out; calling it then says why instead of "unknown tool"."""

    def __init__(self, *args: Any, read_only: bool = False, **kwargs: Any) -> None:
        self.read_only = read_only
        self.withheld: set[str] = set()
        # Resources that come and go with the data (one per webhook, per event type).
        self.extra_resources: Callable[[], Awaitable[list[MCPResource]]] | None = None
        # Called once, after the first tool call returns (the stdio server starts its dispatcher then).
        self.after_first_answer: Callable[[], None] | None = None
        super().__init__(*args, **kwargs)

    async def list_resources(self) -> list[MCPResource]:
        listed = await super().list_resources()
        if self.extra_resources is not None:
            listed.extend(await self.extra_resources())
        return listed

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.read_only:
            given = inspect.signature(MCPServer.add_tool).bind(self, fn, *args, **kwargs).arguments
            if not allowed_in_read_only(given.get("annotations"), given.get("meta")):
                self.withheld.add(given.get("name") or fn.__name__)
                return
        before = {tool.name for tool in self._tool_manager.list_tools()}
        super().add_tool(fn, *args, **kwargs)
        for tool in self._tool_manager.list_tools():
            if tool.name not in before:
                # The same schemas in as few characters as say it (see :mod:`.schemas`).
                tool.parameters = compact(tool.parameters)
                if tool.output_schema is not None:
                    tool.output_schema = output_shape(compact(tool.output_schema))

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await self._call_tool(name, arguments, context)
        finally:
            hook, self.after_first_answer = self.after_first_answer, None
            if hook is not None:
                hook()

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> CallToolResult | InputRequiredResult:
        if name in self.withheld:
            raise ToolError(
                f"{name} is not available: this server is read-only (WEBHOOK_MCP_READ_ONLY) and only looks at "
                "webhooks; ask the operator to make the change"
            )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            tool = self._tool_manager.get_tool(name)
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            raise ToolError(argument_error(name, tool.parameters, exc.__cause__)) from exc.__cause__


def create_server(
    settings: Settings | None = None, *, hub: Hub | None = None, tenant_id: int | None = None
) -> WebhookServer:
    """Build the MCP server. Without ``hub`` its lifespan opens one (database, sender,
    dispatcher) from ``settings``; with one, the caller owns it (HTTP transports do).
    ``read_only`` in the settings registers only the tools that change nothing. With
    ``tenant_id`` every tool, resource and completion acts for that tenant unless the request's
    door (an HTTP token) names one."""
    from webhook_mcp.interfaces.mcp import completions, prompts, resources
    from webhook_mcp.interfaces.mcp.tools import deliveries, events, inbox, secrets, webhooks

    slot = HubSlot()
    slot.tenant_id = tenant_id
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
    for module in (webhooks, events, deliveries, secrets, inbox, resources, completions):
        module.register(server, slot)
    prompts.register(server)
    return server
