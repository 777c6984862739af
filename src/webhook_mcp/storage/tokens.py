"""Tenant tokens: a token reaches one tenant's data. Only its SHA-256 is stored (and its first
characters, to tell tokens apart), so the database never holds a usable token; a token of a
tenant being deleted resolves to nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, insert, or_, select, update

from webhook_mcp.storage.base import MAX_WEBHOOK_ID, StoreBase
from webhook_mcp.storage.schema import tenant_tokens, tenants

_LISTED = (*tenant_tokens.c, tenants.c.name.label("tenant_name"))


class TokenQueries(StoreBase):
    async def insert_token(self, tenant_id: int, token_hash: str, hint: str, label: str, now: float) -> Row[Any]:
        values = {"tenant_id": tenant_id, "token_hash": token_hash, "hint": hint, "label": label, "created_at": now}

        def work(conn: Connection) -> Any:
            return conn.execute(insert(tenant_tokens).values(**values).returning(*tenant_tokens.c)).one()

        return await self._write(work)

    async def list_tokens(self, tenant_id: int | None = None) -> list[Row[Any]]:
        """Tokens of live tenants (of one when ``tenant_id`` is given), oldest first, with their tenant's name."""
        t = tenant_tokens.c
        query = (
            select(*_LISTED)
            .join(tenants, tenants.c.id == t.tenant_id)
            .where(tenants.c.deleted_at.is_(None))
            .order_by(t.id)
        )
        if tenant_id is not None:
            query = query.where(t.tenant_id == tenant_id)
        return await self._read(lambda conn: list(conn.execute(query).all()))

    async def delete_token(self, token_id: int, tenant_id: int | None = None) -> Row[Any] | None:
        """The revoked token (of ``tenant_id`` only, when given); None if there is no such token."""
        if not 0 < token_id <= MAX_WEBHOOK_ID:
            return None
        t = tenant_tokens.c
        statement = delete(tenant_tokens).where(t.id == token_id)
        if tenant_id is not None:
            statement = statement.where(t.tenant_id == tenant_id)
        return await self._write(lambda conn: conn.execute(statement.returning(*tenant_tokens.c)).one_or_none())

    async def token_tenant(self, *, token_hash: str | None = None, token_id: int | None = None) -> int | None:
        """The live tenant a token (by hash, or by id) reaches; None for an unknown or revoked
        token, or a tenant being deleted."""
        t = tenant_tokens.c
        if token_hash is not None:
            match = t.token_hash == token_hash
        elif token_id is not None and 0 < token_id <= MAX_WEBHOOK_ID:
            match = t.id == token_id
        else:
            return None
        query = (
            select(t.tenant_id).join(tenants, tenants.c.id == t.tenant_id).where(match, tenants.c.deleted_at.is_(None))
        )
        return await self._read(lambda conn: conn.scalar(query))

    async def touch_token(self, token_hash: str, now: float, every: float = 60.0) -> None:
        """Note that the token was used (at most once per ``every`` seconds, so it costs a write
        only now and then)."""
        t = tenant_tokens.c
        stale = or_(t.last_used_at.is_(None), t.last_used_at < now - every)
        statement = update(tenant_tokens).where(t.token_hash == token_hash, stale).values(last_used_at=now)
        await self._write(lambda conn: conn.execute(statement))
