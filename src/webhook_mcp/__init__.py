"""webhook-mcp: signed, retried, logged webhook delivery that AI assistants manage over MCP.

The public API is imported lazily, so ``import webhook_mcp`` (or ``from webhook_mcp import
verify`` in a receiver) does not pull in the dispatcher, SQLAlchemy or the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "Catalog": "webhook_mcp.core.catalog",
    "EventType": "webhook_mcp.core.catalog",
    "load_catalog": "webhook_mcp.core.catalog",
    "ConfigurationError": "webhook_mcp.core.errors",
    "InvalidArgumentError": "webhook_mcp.core.errors",
    "InvalidBatchError": "webhook_mcp.core.errors",
    "InvalidPayloadError": "webhook_mcp.core.errors",
    "NotFoundError": "webhook_mcp.core.errors",
    "UnknownEventTypeError": "webhook_mcp.core.errors",
    "WebhookError": "webhook_mcp.core.errors",
    "WebhookVerificationError": "webhook_mcp.core.errors",
    "PublishedEvent": "webhook_mcp.core.models",
    "Settings": "webhook_mcp.core.settings",
    "generate_secret": "webhook_mcp.core.signing",
    "sign": "webhook_mcp.core.signing",
    "signed_headers": "webhook_mcp.core.signing",
    "verify": "webhook_mcp.core.signing",
    "Dispatcher": "webhook_mcp.delivery.dispatcher",
    "Sender": "webhook_mcp.delivery.sender",
    "SendOutcome": "webhook_mcp.delivery.sender",
    "Hub": "webhook_mcp.service.hub",
    "WebhookService": "webhook_mcp.service.operations",
}

__all__ = [
    "Catalog",
    "ConfigurationError",
    "Dispatcher",
    "EventType",
    "Hub",
    "InvalidArgumentError",
    "InvalidBatchError",
    "InvalidPayloadError",
    "NotFoundError",
    "PublishedEvent",
    "SendOutcome",
    "Sender",
    "Settings",
    "UnknownEventTypeError",
    "WebhookError",
    "WebhookService",
    "WebhookVerificationError",
    "generate_secret",
    "load_catalog",
    "sign",
    "signed_headers",
    "verify",
]

if TYPE_CHECKING:
    from webhook_mcp.core.catalog import Catalog, EventType, load_catalog
    from webhook_mcp.core.errors import (
        ConfigurationError,
        InvalidArgumentError,
        InvalidBatchError,
        InvalidPayloadError,
        NotFoundError,
        UnknownEventTypeError,
        WebhookError,
        WebhookVerificationError,
    )
    from webhook_mcp.core.models import PublishedEvent
    from webhook_mcp.core.settings import Settings
    from webhook_mcp.core.signing import generate_secret, sign, signed_headers, verify
    from webhook_mcp.delivery.dispatcher import Dispatcher
    from webhook_mcp.delivery.sender import Sender, SendOutcome
    from webhook_mcp.service.hub import Hub
    from webhook_mcp.service.operations import WebhookService


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webhook_mcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
