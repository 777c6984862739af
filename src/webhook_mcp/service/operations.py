"""Every webhook operation and its rules, in one service object. Called by the MCP server, the
CLI, the HTTP API and Python code alike; knows nothing of MCP or HTTP. Each group of operations
lives in its own module: webhooks, events (catalog and publishing), deliveries (logs, stats,
redelivery) and secrets."""

from __future__ import annotations

from webhook_mcp.service.deliveries import DeliveryOperations
from webhook_mcp.service.events import EventOperations
from webhook_mcp.service.secrets import SecretOperations
from webhook_mcp.service.webhooks import WebhookOperations


class WebhookService(WebhookOperations, EventOperations, DeliveryOperations, SecretOperations):
    """Webhooks, events, deliveries and secrets: what the tools, the CLI and the HTTP API call."""
