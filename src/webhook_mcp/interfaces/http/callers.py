"""Who is calling: the admin token (``WEBHOOK_MCP_API_TOKEN``) sees every tenant; a tenant token
(``wmt_...``) one tenant. Resolving a tenant token reads the database, so answers are cached for
a few seconds (ingest stays one dictionary lookup per request): a revoked token, or one of a
deleted tenant, stops working on other servers within ``CACHE_SECONDS``, at once on this one."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Send

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.core.tenancy import check_tenant_name
from webhook_mcp.service.tenants import TenantOperations, looks_like_tenant_token, token_hash

CACHE_SECONDS = 5.0
MAX_CACHED = 10_000
TOKEN_HINT = (
    "send the header 'Authorization: Bearer <token>', the token being the server's WEBHOOK_MCP_API_TOKEN "
    "or a tenant's token (webhook-mcp tokens issue TENANT)"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """``tenant_id`` None: the operator (the admin token, or a loopback server without one)."""

    tenant_id: int | None = None


OPERATOR = Caller()


def unauthorized(message: str, *, wrong: bool) -> JSONResponse:
    challenge = 'Bearer realm="webhook-mcp"' + (', error="invalid_token"' if wrong else "")
    body = {"error": {"code": "unauthorized", "message": message}}
    return JSONResponse(body, status_code=401, headers={"www-authenticate": challenge})


class _Cache:
    """Answers kept for ``CACHE_SECONDS``; bounded, so random tokens cannot grow it without end."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int | None, float]] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[int | None]]) -> int | None:
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        value = await compute()
        if len(self._entries) >= MAX_CACHED:
            self._entries.clear()
        self._entries[key] = (value, now + CACHE_SECONDS)
        return value

    def clear(self) -> None:
        self._entries.clear()


class TokenDoor:
    """Turns a request's bearer token into a Caller, or into the 401 that says what to send."""

    def __init__(
        self, admin_token: str | None, tenants: TenantOperations, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.admin_token = admin_token
        self.tenants = tenants
        self._admin = None if admin_token is None else admin_token.encode()
        # The admin's header exactly as clients send it, for one constant-time comparison on the
        # hot path (a token with surrounding spaces never matches the stripped one sent).
        self._admin_header: bytes | None = None
        if admin_token is not None and admin_token == admin_token.strip():
            self._admin_header = b"Bearer " + admin_token.encode()
        self._by_hash = _Cache(clock)
        self._by_name = _Cache(clock)

    async def caller(self, headers: Headers) -> Caller | Response:
        sent = headers.get("authorization", "")
        if self._admin_header is not None and hmac.compare_digest(sent.encode("latin-1"), self._admin_header):
            return OPERATOR
        scheme, _, given = sent.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            if self._admin is None:
                return OPERATOR  # a loopback server without a token: open, as before tenants
            return unauthorized(f"this server needs a bearer token: {TOKEN_HINT}", wrong=False)
        if self._admin is not None and hmac.compare_digest(given.encode("latin-1"), self._admin):
            return OPERATOR
        if looks_like_tenant_token(given):
            tenant_id = await self.tenant_of_hash(token_hash(given))
            if tenant_id is not None:
                return Caller(tenant_id)
            return unauthorized(
                "the tenant token is unknown or revoked, or its tenant was deleted; ask the operator for a new one "
                "(webhook-mcp tokens issue TENANT)",
                wrong=True,
            )
        if self._admin is None:
            return OPERATOR
        return unauthorized(f"the bearer token is wrong: {TOKEN_HINT}", wrong=True)

    async def tenant_of_hash(self, hashed: str) -> int | None:
        """The live tenant of the token with this SHA-256 (cached; a lookup notes the token's use)."""

        async def lookup() -> int | None:
            store = self.tenants.store
            tenant_id = await store.token_tenant(token_hash=hashed)
            if tenant_id is not None:
                await store.touch_token(hashed, time.time())
            return tenant_id

        return await self._by_hash.get(hashed, lookup)

    async def tenant_named(self, name: str) -> int | None:
        """The id of the live tenant named ``name`` (cached); None for no such tenant or no valid name."""
        try:
            check_tenant_name(name)
        except InvalidArgumentError:
            return None

        async def find() -> int | None:
            row = await self.tenants.store.find_tenant(name)
            return None if row is None else int(row.id)

        return await self._by_name.get(name, find)

    def forget(self) -> None:
        """Drop cached answers (after this server revoked a token or deleted or renamed a tenant)."""
        self._by_hash.clear()
        self._by_name.clear()


MCP_SESSION_HEADER = "mcp-session-id"
MAX_SESSIONS = 100_000


class SessionOwners:
    """Which caller started each MCP session (streamable HTTP hands out its id in a response
    header), so a session is only ever continued by callers acting for the same tenant."""

    def __init__(self) -> None:
        self._owners: OrderedDict[str, int | None] = OrderedDict()

    def allows(self, headers: Headers, caller: Caller) -> bool:
        session = headers.get(MCP_SESSION_HEADER)
        if session is None or session not in self._owners:
            return True
        return self._owners[session] == caller.tenant_id

    def wrap(self, send: Send, caller: Caller) -> Send:
        """``send``, noting the owner of a session id the response hands out."""

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name.lower() == MCP_SESSION_HEADER.encode():
                        self._note(value.decode("latin-1"), caller.tenant_id)
            await send(message)

        return noting

    def _note(self, session: str, tenant_id: int | None) -> None:
        if session in self._owners:
            return
        if len(self._owners) >= MAX_SESSIONS:
            self._owners.popitem(last=False)
        self._owners[session] = tenant_id
