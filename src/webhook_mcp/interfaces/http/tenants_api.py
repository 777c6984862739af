"""The operator's HTTP API for tenants: ``/v1/tenants`` (list, create), ``/v1/tenants/{name}``
(rename, delete) and ``/v1/tenants/{name}/tokens`` (issue, list, revoke). Only the operator (the
admin token, or a loopback server without one) may call them: the guard answers a tenant's token
403 before a route runs, and every route checks again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webhook_mcp.core.errors import ConflictError, InvalidArgumentError, NotFoundError, WebhookError
from webhook_mcp.interfaces.acting import acting_tenant
from webhook_mcp.interfaces.http.auth import ONE_TENANT_SERVER_MESSAGE
from webhook_mcp.interfaces.http.callers import TokenDoor
from webhook_mcp.interfaces.http.ingest import BodyError, decode, error, read_body
from webhook_mcp.interfaces.http.media import json_content_type_refusal

TENANTS_PATH = "/v1/tenants"
MAX_BODY_BYTES = 16 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]
_STATUS = ((NotFoundError, 404, "not_found"), (ConflictError, 409, "conflict"), (InvalidArgumentError, 400, "invalid"))


def _failure(exc: WebhookError) -> Response:
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return error(status, code, str(exc))
    return error(400, "rejected", str(exc))


async def _body(request: Request, *required: str) -> dict[str, Any]:
    """The request's JSON object; BodyError says what is wrong with it."""
    refusal = json_content_type_refusal(request.headers)
    if refusal is not None:
        raise BodyError(refusal)
    payload = decode(await read_body(request.receive, request.headers, MAX_BODY_BYTES, "a tenant request"))
    if not isinstance(payload, dict):
        raise BodyError(error(400, "invalid_body", 'the body must be a JSON object, e.g. {"name": "acme"}'))
    missing = [name for name in required if not isinstance(payload.get(name), str)]
    if missing:
        raise BodyError(error(400, "invalid_body", f"the body needs {missing[0]!r} as a string"))
    return payload


class TenantsApi:
    """The routes, sharing the token door (whose cache they clear after a change)."""

    def __init__(self, door: TokenDoor, read_only: bool) -> None:
        self.door = door
        self.ops = door.tenants
        self.read_only = read_only

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        one, tokens = f"{TENANTS_PATH}/{{name}}", f"{TENANTS_PATH}/{{name}}/tokens"
        return [
            (TENANTS_PATH, "GET", self.guarded(self.list_tenants)),
            (TENANTS_PATH, "POST", self.guarded(self.create, writes=True)),
            (one, "PATCH", self.guarded(self.rename, writes=True)),
            (one, "DELETE", self.guarded(self.delete, writes=True)),
            (tokens, "GET", self.guarded(self.list_tokens)),
            (tokens, "POST", self.guarded(self.issue, writes=True)),
            (f"{tokens}/{{token_id:int}}", "DELETE", self.guarded(self.revoke, writes=True)),
        ]

    def guarded(self, handler: Endpoint, *, writes: bool = False) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            if acting_tenant() is not None:  # (a tenant's token was refused before the route)
                return error(403, "operator_only", ONE_TENANT_SERVER_MESSAGE)
            if writes and self.read_only:
                return error(
                    403, "read_only", "this server is read-only (WEBHOOK_MCP_READ_ONLY): tenants are not changed"
                )
            try:
                return await handler(request)
            except BodyError as exc:
                return exc.response
            except WebhookError as exc:
                return _failure(exc)

        return endpoint

    async def list_tenants(self, request: Request) -> Response:
        return JSONResponse({"tenants": [t.as_dict() for t in await self.ops.list_tenants()]})

    async def create(self, request: Request) -> Response:
        body = await _body(request, "name")
        created = await self.ops.create(body["name"])
        self.door.forget()  # a name looked up before it existed is not remembered as missing
        return JSONResponse(created.as_dict(), status_code=201)

    async def rename(self, request: Request) -> Response:
        body = await _body(request, "name")
        renamed = await self.ops.rename(request.path_params["name"], body["name"])
        self.door.forget()
        return JSONResponse(renamed.as_dict())

    async def delete(self, request: Request) -> Response:
        deleted = await self.ops.delete(request.path_params["name"])
        self.door.forget()
        self.ops.purge_in_background(deleted.id)
        return JSONResponse({**deleted.as_dict(), "deleted": True}, status_code=202)

    async def list_tokens(self, request: Request) -> Response:
        listed = await self.ops.list_tokens(request.path_params["name"])
        return JSONResponse({"tokens": [t.as_dict() for t in listed]})

    async def issue(self, request: Request) -> Response:
        has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        body = await _body(request) if has_body else {}
        label = body.get("label", "")
        if not isinstance(label, str):
            raise InvalidArgumentError("'label' must be a string")
        issued = await self.ops.issue_token(request.path_params["name"], label)
        return JSONResponse(issued.as_dict(), status_code=201)

    async def revoke(self, request: Request) -> Response:
        revoked = await self.ops.revoke_token(int(request.path_params["token_id"]), request.path_params["name"])
        self.door.forget()
        return JSONResponse({**revoked.as_dict(), "revoked": True})
