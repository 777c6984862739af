"""``POST /v1/events``: the shop's HTTP door for publishing, served next to the MCP endpoint."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webhook_mcp.core.errors import InvalidArgumentError, WebhookError
from webhook_mcp.core.jsonsafe import loads_strict
from webhook_mcp.interfaces.http.auth import token_refusal
from webhook_mcp.interfaces.http.media import json_content_type_refusal
from webhook_mcp.service.hub import Hub

EVENTS_PATH = "/v1/events"


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def events_endpoint(hub: Hub, token: str) -> Any:
    """Build the handler; bodies are read only up to the payload limit, so a huge upload costs nothing.
    It checks the token itself too, so it is never open wherever it is mounted."""
    limit = hub.settings.max_payload_bytes

    async def publish_event(request: Request) -> Response:
        refusal = token_refusal(request.headers, token) or json_content_type_refusal(request.headers)
        if refusal is not None:
            return refusal
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return _error(413, "too_large", f"request body is over {limit} bytes (WEBHOOK_MCP_MAX_PAYLOAD_BYTES)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, "too_large", f"request body is over {limit} bytes (WEBHOOK_MCP_MAX_PAYLOAD_BYTES)")
        try:
            payload = loads_strict(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, "invalid_json", f"body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "invalid_json", "body nests JSON too deeply; send a flatter object")
        if not isinstance(payload, dict):
            return _error(400, "invalid_body", 'body must be a JSON object: {"type": ..., "data": {...}}')
        event_type, data, key = payload.get("type"), payload.get("data"), payload.get("idempotency_key")
        problems = []
        if not isinstance(event_type, str):
            problems.append("`type` must be an event type name such as order.created")
        if not isinstance(data, dict):
            problems.append("`data` must be a JSON object")
        if key is not None and not isinstance(key, str):
            problems.append("`idempotency_key` must be a string")
        unknown = sorted(set(payload) - {"type", "data", "idempotency_key"})
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)}; allowed: type, data, idempotency_key")
        if problems:
            return _error(422, "invalid_event", "; ".join(problems), problems=problems)
        try:
            published = await hub.service.publish(str(event_type), data, key)
        except InvalidArgumentError as exc:
            extra = {"problems": exc.problems} if hasattr(exc, "problems") else {}
            return _error(422, "invalid_event", str(exc), **extra)
        except WebhookError as exc:
            return _error(400, "rejected", str(exc))
        return JSONResponse(published.model_dump(mode="json"), status_code=202)

    return publish_event
