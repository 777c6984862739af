"""What the operator does with tenants: create, list, rename and delete them, and issue, list and
revoke the tokens that reach one tenant's data. A token is shown once, when issued; the store
keeps its SHA-256 only."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Row

from webhook_mcp.core import models
from webhook_mcp.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID, DEFAULT_TENANT_NAME, check_tenant_name
from webhook_mcp.delivery.purge import PURGE_BATCH, purge_tenant
from webhook_mcp.storage.store import Store
from webhook_mcp.storage.tenants import TenantNameTaken

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "wmt_"
HINT_LENGTH = 12  # "wmt_" and 8 characters of the random part
MAX_LABEL_LENGTH = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_tenant_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 <= len(token) <= 200


@dataclass(frozen=True, slots=True)
class TenantInfo:
    id: int
    name: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TenantSummary:
    """A tenant as the operator's overview shows it; ``deleting``: its data is being removed."""

    id: int
    name: str
    created_at: str
    webhooks: int
    tokens: int
    deleting: bool

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_TENANT_ID


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    tenant: str
    hint: str
    label: str
    created_at: str
    last_used_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``token`` is its only appearance anywhere."""

    info: TokenInfo
    token: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.info.as_dict(), "token": self.token}


def _taken(name: str) -> str:
    return f"a tenant named {name!r} exists already (or is being deleted); pick another name"


def _when(moment: float | None) -> str | None:
    at = models.to_datetime(moment)
    return None if at is None else at.isoformat()


def _tenant(row: Row[Any]) -> TenantInfo:
    return TenantInfo(id=row.id, name=row.name, created_at=_when(row.created_at) or "")


def _summary(row: Row[Any]) -> TenantSummary:
    return TenantSummary(
        id=row.id,
        name=row.name,
        created_at=_when(row.created_at) or "",
        webhooks=int(row.webhooks),
        tokens=int(row.tokens),
        deleting=row.deleted_at is not None,
    )


def _token(row: Row[Any], tenant: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        tenant=tenant,
        hint=f"{row.hint}…",
        label=row.label,
        created_at=_when(row.created_at) or "",
        last_used_at=_when(row.last_used_at),
    )


class TenantOperations:
    """The operator's tenant operations over the full store (never a tenant's view)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._purges: set[asyncio.Task[int]] = set()

    async def require(self, name: str) -> Row[Any]:
        """The live tenant named ``name``, or a NotFoundError saying how to see the names."""
        check_tenant_name(name)
        row = await self.store.find_tenant(name)
        if row is None:
            raise NotFoundError(f"no tenant named {name!r}; run 'webhook-mcp tenants list' to see the names")
        return row

    async def create(self, name: str) -> TenantInfo:
        check_tenant_name(name)
        try:
            return _tenant(await self.store.create_tenant(name, self._clock()))
        except TenantNameTaken:
            raise ConflictError(_taken(name)) from None

    async def list_tenants(self) -> list[TenantInfo]:
        return [_tenant(row) for row in await self.store.list_tenants()]

    async def overview(self) -> list[TenantSummary]:
        """Every tenant with its webhook and token counts, those being deleted too."""
        return [_summary(row) for row in await self.store.tenant_overview()]

    async def summary(self, name: str) -> TenantSummary:
        """One live tenant with its counts; NotFoundError as ``require``."""
        row = await self.require(name)
        found = await self.store.tenant_overview(int(row.id))
        if not found or found[0].deleted_at is not None:
            raise NotFoundError(f"no tenant named {name!r}; run 'webhook-mcp tenants list' to see the names")
        return _summary(found[0])

    async def rename(self, old: str, new: str) -> TenantInfo:
        row = await self.require(old)
        check_tenant_name(new)
        try:
            renamed = await self.store.rename_tenant(row.id, new)
        except TenantNameTaken:
            raise ConflictError(_taken(new)) from None
        if renamed is None:
            raise NotFoundError(f"no tenant named {old!r}; run 'webhook-mcp tenants list' to see the names")
        return _tenant(renamed)

    async def delete(self, name: str) -> TenantInfo:
        """Mark the tenant deleted: at once its tokens stop working and its webhooks stop
        delivering; ``purge`` (or the retention loop) then removes its rows."""
        row = await self.require(name)
        if row.id == DEFAULT_TENANT_ID:
            raise InvalidArgumentError(
                f"the {DEFAULT_TENANT_NAME!r} tenant cannot be deleted: it owns everything published without "
                "a tenant; delete its webhooks instead"
            )
        marked = await self.store.mark_tenant_deleted(row.id, self._clock())
        if marked is None:
            raise NotFoundError(f"no tenant named {name!r}; run 'webhook-mcp tenants list' to see the names")
        return _tenant(marked)

    async def purge(self, tenant_id: int, batch: int = PURGE_BATCH) -> int:
        """Rows removed for a tenant marked deleted, batch by batch, until none is left."""
        return await purge_tenant(self.store, tenant_id, batch)

    def purge_in_background(self, tenant_id: int) -> None:
        """Remove a deleted tenant's rows in a task of its own, so the caller answers at once; the
        retention loop finishes what a failure leaves."""
        task = asyncio.create_task(self.purge(tenant_id), name=f"webhook-mcp-purge-tenant-{tenant_id}")
        self._purges.add(task)
        task.add_done_callback(self._purged)

    def _purged(self, task: asyncio.Task[int]) -> None:
        self._purges.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("purging a deleted tenant failed (%s); the retention loop tries again", task.exception())

    async def issue_token(self, tenant: str, label: str = "") -> IssuedToken:
        row = await self.require(tenant)
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidArgumentError(f"a token's label is at most {MAX_LABEL_LENGTH} characters; shorten it")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        stored = await self.store.insert_token(row.id, token_hash(token), token[:HINT_LENGTH], label, self._clock())
        return IssuedToken(_token(stored, row.name), token)

    async def list_tokens(self, tenant: str | None = None) -> list[TokenInfo]:
        tenant_id = None if tenant is None else (await self.require(tenant)).id
        return [_token(row, row.tenant_name) for row in await self.store.list_tokens(tenant_id)]

    async def revoke_token(self, token_id: int, tenant: str | None = None) -> TokenInfo:
        """Revoke a token (one of ``tenant``'s, when given); NotFoundError if there is none."""
        owner = None if tenant is None else await self.require(tenant)
        row = await self.store.delete_token(token_id, None if owner is None else owner.id)
        if row is None:
            where = "" if owner is None else f" of tenant {owner.name!r}"
            raise NotFoundError(f"no token with id {token_id}{where}; list the tokens to see their ids")
        found = owner or await self.store.find_tenant(int(row.tenant_id))
        return _token(row, found.name if found is not None else "")

    async def resolve(self, token: str) -> int | None:
        """The live tenant a token reaches; None for anything else (unknown, revoked, deleted tenant)."""
        if not looks_like_tenant_token(token):
            return None
        return await self.store.token_tenant(token_hash=token_hash(token))
