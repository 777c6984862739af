"""The service's shared ground: its collaborators, the clock, and webhook rows as models."""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

from sqlalchemy import Row

from webhook_mcp.core import models
from webhook_mcp.core.catalog import Catalog
from webhook_mcp.core.errors import NotFoundError
from webhook_mcp.core.settings import Settings
from webhook_mcp.core.signing import mask_secret
from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID
from webhook_mcp.core.vault import Vault
from webhook_mcp.delivery.deferred import SendsDeliveries
from webhook_mcp.service.publishing import Publisher
from webhook_mcp.storage.store import Store


def rotation_ends(row: Row[Any], now: float) -> float | None:
    """When the previous secret stops signing, if a rotation's grace period is still running."""
    expires: float | None = row.previous_secret_expires_at
    return expires if row.previous_secret is not None and expires is not None and expires > now else None


def _webhook_model(row: Row[Any], vault: Vault, now: float) -> models.Webhook:
    return models.Webhook(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=models.to_datetime(row.disabled_at),
        secret_hint=mask_secret(vault.reveal(row.secret)),
        secret_rotation_ends_at=models.to_datetime(rotation_ends(row, now)),
        created_at=models.to_datetime(row.created_at),
        updated_at=models.to_datetime(row.updated_at),
        consecutive_failures=row.consecutive_failures,
        last_success_at=models.to_datetime(row.last_success_at),
        last_failure_at=models.to_datetime(row.last_failure_at),
    )


class ServiceBase:
    """What every group of operations shares: the store, catalog, sender and settings, the clock,
    and how a webhook row becomes what callers see.

    A service sees every tenant (what the operator and a single shop use); ``for_tenant`` gives
    one that sees and publishes for one tenant only, through a store view that enforces it."""

    tenant_id: int | None = None  # None: every tenant

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        sender: SendsDeliveries,
        settings: Settings,
        *,
        on_publish: Callable[[], None] | None = None,
        on_change: Callable[[int], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.sender = sender
        self.settings = settings
        self._on_publish = on_publish
        self._on_change = on_change
        self._clock = clock
        self._vault = Vault(settings.secret_key)
        self.publisher = Publisher(store, catalog, settings, on_publish=on_publish, clock=lambda: self._clock())

    def for_tenant(self, tenant_id: int) -> Self:
        """This service for one tenant: its webhooks, deliveries, logs and stats, and events
        published for it. Shares everything else (the publisher's group commit included)."""
        view = copy.copy(self)
        view.tenant_id = tenant_id
        view.store = self.store.scoped(tenant_id)
        return view

    @property
    def publishing_tenant(self) -> int:
        """Whose events this service publishes: its tenant, or the default one."""
        return DEFAULT_TENANT_ID if self.tenant_id is None else self.tenant_id

    async def _changed(self, webhook_id: int) -> None:
        """Deliveries this process queued for the webhook would go out as it was (its old URL or
        secret, or although it is disabled or gone): they go back to the database instead."""
        if self._on_change is not None:
            await self._on_change(webhook_id)

    def _model(self, row: Row[Any]) -> models.Webhook:
        return _webhook_model(row, self._vault, self._clock())

    async def _row(self, webhook_id: int) -> Row[Any]:
        row = await self.store.get_webhook(webhook_id)
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        return row
