"""Errors the service raises on purpose; each message says what was wrong and what to do."""

from __future__ import annotations


class WebhookError(Exception):
    """Base of every anticipated failure; the MCP, CLI and HTTP layers show ``str(error)`` as is."""


class NotFoundError(WebhookError):
    """The thing named by an id does not exist."""


class ConflictError(WebhookError):
    """The change clashes with what exists (e.g. a name another tenant has)."""


class ForbiddenError(WebhookError):
    """The caller may not do this (e.g. a tenant's token asking for an operator's operation)."""


class InvalidArgumentError(WebhookError):
    """An argument is malformed or not allowed."""


class UnknownEventTypeError(InvalidArgumentError):
    """An event type is not in the catalog."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown event type {name!r}.{hint} Call get_webhook_events to list the event types.")
        self.name = name
        self.suggestions = suggestions


class InvalidPayloadError(InvalidArgumentError):
    """Event data does not match its event type's JSON Schema."""

    def __init__(self, event_type: str, problems: list[str]) -> None:
        listed = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(
            f"data for {event_type!r} does not match its schema: {listed}{more}. "
            "Call get_webhook_sample_payload to see a valid example."
        )
        self.event_type = event_type
        self.problems = problems


class InvalidBatchError(InvalidArgumentError):
    """Some events of a batch are invalid, so none of them was published."""

    def __init__(self, invalid: dict[int, list[str]], total: int) -> None:
        listed = "; ".join(
            f"events[{index}] {problem.rstrip('.')}" for index, problems in invalid.items() for problem in problems
        )
        if len(listed) > 2000:
            listed = listed[:2000] + "…"
        super().__init__(
            f"{len(invalid)} of {total} events are invalid, so none was published: {listed}. "
            "Fix them and send the batch again."
        )
        self.invalid = invalid
        self.total = total


class BatchTooLargeError(InvalidArgumentError):
    """A batch carries more events than one transaction may take."""


class ConfigurationError(WebhookError):
    """A setting or operator-supplied file is unusable."""


class WebhookVerificationError(WebhookError):
    """A received webhook request failed ``webhook_mcp.verify``: reject it (e.g. with HTTP 400)."""
