"""Whom a request acts for: the tenant a door (an HTTP token, a stdio server started for one
tenant) resolved, carried to the tools and routes below it in a context variable, so no tool or
route takes the tenant as an argument it could be given wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from webhook_mcp.core.errors import ConfigurationError
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService

# None: the caller sees every tenant (an admin token, a server started for no tenant).
_ACTING_FOR: ContextVar[int | None] = ContextVar("webhook_mcp_acting_for", default=None)


@contextlib.contextmanager
def acting_for(tenant_id: int | None) -> Iterator[None]:
    """Everything run inside acts for ``tenant_id`` (None: for every tenant)."""
    token = _ACTING_FOR.set(tenant_id)
    try:
        yield
    finally:
        _ACTING_FOR.reset(token)


def acting_tenant() -> int | None:
    """The tenant the current request acts for, None when it may see every tenant."""
    return _ACTING_FOR.get()


def service_for_caller(service: WebhookService) -> WebhookService:
    """The service as the current caller may see it: scoped to its tenant when it has one."""
    tenant_id = _ACTING_FOR.get()
    return service if tenant_id is None else service.for_tenant(tenant_id)


async def serving_tenant(hub: Hub) -> int | None:
    """The tenant a server started for one (setting ``tenant``, ``serve --tenant``) acts for; None
    when it was started for every tenant. An unknown name stops the start with how to create it."""
    name = hub.settings.tenant
    if name is None:
        return None
    found = await hub.store.find_tenant(name)
    if found is None:
        raise ConfigurationError(
            f"no tenant named {name!r} (WEBHOOK_MCP_TENANT or --tenant); `webhook-mcp tenants create {name}` creates it"
        )
    return int(found.id)
