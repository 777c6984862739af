"""Completions for prompt arguments and resource template variables: webhook ids and event type
names, matched on what was typed so far."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from webhook_mcp.interfaces.mcp.common import HubSlot

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer

MAX_VALUES = 100  # the protocol's limit per answer
WEBHOOK_ARGUMENTS = frozenset({"id"})
EVENT_ARGUMENTS = frozenset({"name", "event", "events"})


def register(server: WebhookServer, slot: HubSlot) -> None:
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # untyped in the SDK
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if slot.hub is None:
            return None
        service = slot.service()  # the caller's tenant's webhooks only
        if argument.name in WEBHOOK_ARGUMENTS:
            hooks = (await service.list_webhooks()).webhooks
            return _matching([str(hook.id) for hook in hooks], argument.value)
        if argument.name in EVENT_ARGUMENTS:
            names = [t.name for t in service.list_event_types().event_types]
            return (
                _completed_list(names, argument.value)
                if argument.name == "events"
                else _matching(names, argument.value)
            )
        return None


def _matching(options: list[str], typed: str) -> Completion:
    found = [option for option in options if option.startswith(typed.strip())]
    return Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)


def _completed_list(names: list[str], typed: str) -> Completion:
    """A comma-separated list: complete its last item, keeping the ones before."""
    head, _, last = typed.rpartition(",")
    done = [part.strip() for part in head.split(",") if part.strip()]
    prefix = ", ".join(done) + ", " if done else ""
    found = _matching([name for name in names if name not in done], last)
    return Completion(values=[prefix + value for value in found.values], total=found.total, has_more=found.has_more)
