"""Tenants: creating, finding, listing and renaming them. A tenant being deleted (``deleted_at``
set) is invisible here: its name cannot be found, and a new tenant may not take it until the
last of its data is gone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from webhook_mcp.storage.base import MAX_WEBHOOK_ID, StoreBase
from webhook_mcp.storage.schema import tenant_tokens, tenants, webhooks


class TenantQueries(StoreBase):
    async def create_tenant(self, name: str, now: float) -> Row[Any]:
        """The new tenant; raises TenantNameTaken if a live tenant, or one being deleted, has the name."""

        def work(conn: Connection) -> Any:
            return conn.execute(insert(tenants).values(name=name, created_at=now).returning(*tenants.c)).one()

        try:
            return await self._write(work)
        except IntegrityError as exc:
            raise TenantNameTaken(name) from exc

    async def find_tenant(self, name_or_id: str | int) -> Row[Any] | None:
        """A live tenant by its name or its numeric id."""
        t = tenants.c
        if isinstance(name_or_id, int):
            if not 0 < name_or_id <= MAX_WEBHOOK_ID:
                return None
            match = t.id == name_or_id
        else:
            match = t.name == name_or_id
        query = select(tenants).where(match, t.deleted_at.is_(None))
        return await self._read(lambda conn: conn.execute(query).one_or_none())

    async def list_tenants(self) -> list[Row[Any]]:
        query = select(tenants).where(tenants.c.deleted_at.is_(None)).order_by(tenants.c.id)
        return await self._read(lambda conn: list(conn.execute(query).all()))

    async def tenant_overview(self, tenant_id: int | None = None) -> list[Row[Any]]:
        """Every tenant (or one), those being deleted too, with how many webhooks and tokens each
        has: two grouped counts over the ``tenant_id`` indexes, for the operator's page."""
        w, k = webhooks.c, tenant_tokens.c
        hooks = select(w.tenant_id, func.count().label("n")).group_by(w.tenant_id)
        tokens = select(k.tenant_id, func.count().label("n")).group_by(k.tenant_id)
        query = select(tenants)
        if tenant_id is not None:
            query = query.where(tenants.c.id == tenant_id)
            hooks, tokens = hooks.where(w.tenant_id == tenant_id), tokens.where(k.tenant_id == tenant_id)
        hook_counts, token_counts = hooks.subquery(), tokens.subquery()
        query = (
            query.add_columns(
                func.coalesce(hook_counts.c.n, 0).label("webhooks"), func.coalesce(token_counts.c.n, 0).label("tokens")
            )
            .outerjoin(hook_counts, hook_counts.c.tenant_id == tenants.c.id)
            .outerjoin(token_counts, token_counts.c.tenant_id == tenants.c.id)
            .order_by(tenants.c.id)
        )
        return await self._read(lambda conn: list(conn.execute(query).all()))

    async def rename_tenant(self, tenant_id: int, name: str) -> Row[Any] | None:
        """The renamed tenant; None if there is no such live tenant; TenantNameTaken if another has the name."""
        t = tenants.c

        statement = update(tenants).where(t.id == tenant_id, t.deleted_at.is_(None)).values(name=name)
        try:
            return await self._write(lambda conn: conn.execute(statement.returning(*tenants.c)).one_or_none())
        except IntegrityError as exc:
            raise TenantNameTaken(name) from exc


class TenantNameTaken(Exception):
    """Another tenant (live, or being deleted) has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
