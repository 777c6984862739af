"""webhook-mcp: signed, retried, logged webhook delivery that AI assistants manage over MCP."""

from .catalog import Catalog, EventType, load_catalog
from .dispatcher import Dispatcher
from .errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidPayloadError,
    NotFoundError,
    UnknownEventTypeError,
    WebhookError,
    WebhookVerificationError,
)
from .hub import Hub
from .models import PublishedEvent
from .sender import Sender, SendOutcome
from .service import WebhookService
from .settings import Settings
from .signing import generate_secret, sign, signed_headers, verify

__all__ = [
    "Catalog",
    "ConfigurationError",
    "Dispatcher",
    "EventType",
    "Hub",
    "InvalidArgumentError",
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

__version__ = "0.1.0"
