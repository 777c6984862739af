"""``POST /v1/events``: the shop's HTTP door for publishing, served next to the MCP endpoint.

The body is one event, ``{"type": ..., "data": {...}, "idempotency_key": ...}`` (the key may come
in an ``Idempotency-Key`` header instead), or a batch, ``{"events": [event, ...]}``, stored all or
nothing in one transaction."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook_mcp.core.errors import BatchTooLargeError, InvalidArgumentError, InvalidBatchError, WebhookError
from webhook_mcp.core.jsonsafe import loads_strict
from webhook_mcp.interfaces.acting import acting_tenant
from webhook_mcp.interfaces.http.callers import Caller, TokenDoor
from webhook_mcp.interfaces.http.headers import request_headers
from webhook_mcp.interfaces.http.media import json_content_type_refusal
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.publishing import event_fields, item_problems
from webhook_mcp.service.tenants import TenantOperations

EVENTS_PATH = "/v1/events"
IDEMPOTENCY_HEADER = "idempotency-key"
TENANT_HEADER = "x-webhook-tenant"


class BodyError(Exception):
    """A request the route answers with an error status; carries the response."""

    def __init__(self, response: Response) -> None:
        self.response = response


class FastJSONResponse(JSONResponse):
    """JSONResponse rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return FastJSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


# Digits to "0", everything else to " ": a run of 19 digits is then a plain substring search,
# ten times cheaper than a regular expression over a 1 KB body.
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def parse_json(body: bytes) -> Any:
    """The one parse of every request body: strict JSON (NaN and Infinity refused, by name and
    path). orjson parses several times faster than json and is strict too, but turns integers
    beyond 64 bits into floats, so a body with a run of 19 digits anywhere, and any body orjson
    refuses (to word the refusal), takes the exact strict path instead."""
    if _LONG_NUMBER not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return loads_strict(body)


async def read_body(receive: Receive, headers: Headers, limit: int, setting: str) -> bytes:
    """The body, read only up to ``limit`` bytes, so a huge upload costs nothing."""
    declared = headers.get("content-length")
    too_large = f"request body is over {limit} bytes ({setting})"
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(error(413, "too_large", too_large))
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyError(error(400, "disconnected", "the client went away before sending the whole body"))
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            raise BodyError(error(413, "too_large", too_large))
        if not message.get("more_body", False):
            return body


def decode(body: bytes) -> Any:
    try:
        return parse_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(error(400, "invalid_json", f"body is not valid JSON: {exc}")) from None
    except RecursionError:
        raise BodyError(error(400, "invalid_json", "body nests JSON too deeply; send a flatter object")) from None


async def _publish_one(service: WebhookService, payload: dict[str, Any], header_key: str | None) -> Response:
    if header_key is not None:
        body_key = payload.get("idempotency_key")
        if body_key is not None and body_key != header_key:
            message = "the Idempotency-Key header and the body's idempotency_key differ; send one of them"
            return error(422, "invalid_event", message, problems=[f"idempotency_key: {message}"])
        payload = {**payload, "idempotency_key": header_key}
    try:
        event_type, data, key = event_fields(payload)
        published = await service.publish(event_type, data, key)
    except InvalidArgumentError as exc:
        return error(422, "invalid_event", str(exc), problems=item_problems(exc))
    except WebhookError as exc:
        return error(400, "rejected", str(exc))
    return _Accepted(orjson.dumps(published.model_dump(mode="json")))


class _Accepted(Response):
    """A 202 with a body already rendered, its headers built without Starlette's per-response work."""

    def __init__(self, body: bytes) -> None:
        self.status_code = 202
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def _publish_batch(service: WebhookService, payload: dict[str, Any], header_key: str | None) -> Response:
    items = payload["events"]
    if header_key is not None:
        message = "an Idempotency-Key header applies to a single event; give each event of a batch its idempotency_key"
        return error(422, "invalid_batch", message)
    extra = sorted(str(key) for key in payload if key != "events")
    if extra or not isinstance(items, list) or not items:
        message = 'a batch is {"events": [event, ...]} with at least one event and no other field'
        return error(422, "invalid_batch", message)
    try:
        published = await service.publish_events(items)
    except BatchTooLargeError as exc:
        return error(413, "too_many_events", str(exc))
    except InvalidBatchError as exc:
        invalid = [
            {"index": index, "problems": [_in_batch(index, problem) for problem in problems]}
            for index, problems in exc.invalid.items()
        ]
        return error(422, "invalid_events", str(exc), invalid=invalid)
    except WebhookError as exc:
        return error(400, "rejected", str(exc))
    events = [p.model_dump(mode="json") for p in published]
    duplicates = sum(p.duplicate for p in published)
    return FastJSONResponse(
        {"events": events, "published": len(events) - duplicates, "duplicates": duplicates}, status_code=202
    )


def _in_batch(index: int, problem: str) -> str:
    """ "data.id: ..." of the third event is "events[2].data.id: ..."; "event: ..." is "events[2]: ..."."""
    whole = problem.removeprefix("event: ")
    return f"events[{index}]: {whole}" if whole is not problem else f"events[{index}].{problem}"


class EventsEndpoint:
    """The route as a bare ASGI app: publishing is the hot path, so it skips Starlette's request
    and middleware objects (the guard in front still checks Host, Origin and the token). It checks
    the token itself too, so it is never open wherever it is mounted.

    Events are published for the token's tenant; the admin token publishes for the tenant its
    ``X-Webhook-Tenant`` header names, else the one the server was started for, else the default."""

    def __init__(self, hub: Hub, token: str, door: TokenDoor | None = None) -> None:
        self.hub = hub
        self.token = token
        self.door = door or TokenDoor(token, TenantOperations(hub.store))
        self._services: dict[int, WebhookService] = {}
        settings = hub.settings
        self.single_limit = settings.max_payload_bytes
        self.batch_limit = settings.max_batch_bytes
        self.body_limit = max(self.single_limit, self.batch_limit)
        batch_bigger = self.batch_limit >= self.single_limit
        self.limit_setting = "WEBHOOK_MCP_MAX_BATCH_BYTES" if batch_bigger else "WEBHOOK_MCP_MAX_PAYLOAD_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(request_headers(scope), receive)
        await response(scope, receive, send)

    async def respond(self, headers: Headers, receive: Receive) -> Response:
        caller = await self.door.caller(headers)
        if isinstance(caller, Response):
            return caller
        refusal = json_content_type_refusal(headers)
        if refusal is not None:
            return refusal
        service = await self._service_for(caller, headers.get(TENANT_HEADER))
        if isinstance(service, Response):
            return service
        try:
            body = await read_body(receive, headers, self.body_limit, self.limit_setting)
            payload = decode(body)
        except BodyError as exc:
            return exc.response
        if not isinstance(payload, dict):
            return error(
                400,
                "invalid_body",
                'body must be a JSON object: one event {"type": ..., "data": {...}} or a batch {"events": [...]}',
            )
        header_key = headers.get(IDEMPOTENCY_HEADER)
        if "events" in payload and "type" not in payload:
            if len(body) > self.batch_limit:
                message = f"request body is over {self.batch_limit} bytes (WEBHOOK_MCP_MAX_BATCH_BYTES)"
                return error(413, "too_large", message)
            return await _publish_batch(service, payload, header_key)
        if len(body) > self.single_limit:
            message = f"request body is over {self.single_limit} bytes (WEBHOOK_MCP_MAX_PAYLOAD_BYTES)"
            return error(413, "too_large", message)
        return await _publish_one(service, payload, header_key)

    async def _service_for(self, caller: Caller, named: str | None) -> WebhookService | Response:
        """The service publishing for the caller's tenant (a tenant token's own; the one an admin names)."""
        if named is None:  # the token's tenant, else the one the server acts for, else the default
            own = caller.tenant_id if caller.tenant_id is not None else acting_tenant()
            return self.hub.service if own is None else self._service(own)
        tenant_id = await self.door.tenant_named(named)
        if caller.tenant_id is not None:
            if tenant_id != caller.tenant_id:
                message = f"this token publishes for its own tenant, not {named[:80]!r}; leave {TENANT_HEADER} out"
                return error(403, "wrong_tenant", message)
            return self._service(caller.tenant_id)
        if tenant_id is None:
            message = (
                f"no tenant named {named[:80]!r}; see GET /v1/tenants, or create it (webhook-mcp tenants create NAME)"
            )
            return error(404, "unknown_tenant", message)
        return self._service(tenant_id)

    def _service(self, tenant_id: int) -> WebhookService:
        service = self._services.get(tenant_id)
        if service is None:
            if len(self._services) >= 1000:
                self._services.clear()
            service = self._services[tenant_id] = self.hub.service.for_tenant(tenant_id)
        return service


def publishing_off(reason: str) -> ASGIApp:
    """What ``POST /v1/events`` answers on a server that does not publish over HTTP: why, and
    what to do, rather than a bare 404 a newcomer's curl cannot explain."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        message = f"POST {EVENTS_PATH} is off on this server: {reason}"
        await error(404, "publishing_off", message)(scope, receive, send)

    return endpoint


def events_endpoint(hub: Hub, token: str, door: TokenDoor | None = None) -> EventsEndpoint:
    return EventsEndpoint(hub, token, door)


class FastRoute:
    """Sends ``POST path`` straight to ``endpoint`` and everything else to ``app``: the MCP
    application's middleware and router cost more than parsing an event does."""

    def __init__(self, app: ASGIApp, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
