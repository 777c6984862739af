"""``POST /v1/events``: the shop's HTTP door for publishing, served next to the MCP endpoint.

The body is one event, ``{"type": ..., "data": {...}, "idempotency_key": ...}`` (the key may come
in an ``Idempotency-Key`` header instead), or a batch, ``{"events": [event, ...]}``, stored all or
nothing in one transaction."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webhook_mcp.core.errors import BatchTooLargeError, InvalidArgumentError, InvalidBatchError, WebhookError
from webhook_mcp.interfaces.http.auth import token_refusal
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.publishing import event_fields, item_problems

EVENTS_PATH = "/v1/events"
IDEMPOTENCY_HEADER = "idempotency-key"


class BodyError(Exception):
    """A request the route answers with an error status; carries the response."""

    def __init__(self, response: Response) -> None:
        self.response = response


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def parse_json(body: bytes | bytearray) -> Any:
    """The one parse of every request body: strict JSON (NaN and Infinity are refused)."""
    return json.loads(body, parse_constant=_refuse_constant)


async def read_body(request: Request, limit: int, setting: str) -> bytes:
    """The body, read only up to ``limit`` bytes, so a huge upload costs nothing."""
    declared = request.headers.get("content-length")
    too_large = f"request body is over {limit} bytes ({setting})"
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(error(413, "too_large", too_large))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyError(error(413, "too_large", too_large))
    return bytes(body)


def decode(body: bytes) -> Any:
    try:
        return parse_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(error(400, "invalid_json", f"body is not valid JSON: {exc}")) from None
    except RecursionError:
        raise BodyError(error(400, "invalid_json", "body nests JSON too deeply; send a flatter object")) from None


async def _publish_one(hub: Hub, payload: dict[str, Any], header_key: str | None) -> Response:
    if header_key is not None:
        body_key = payload.get("idempotency_key")
        if body_key is not None and body_key != header_key:
            message = "the Idempotency-Key header and the body's idempotency_key differ; send one of them"
            return error(422, "invalid_event", message, problems=[f"idempotency_key: {message}"])
        payload = {**payload, "idempotency_key": header_key}
    try:
        event_type, data, key = event_fields(payload)
        published = await hub.service.publish(event_type, data, key)
    except InvalidArgumentError as exc:
        return error(422, "invalid_event", str(exc), problems=item_problems(exc))
    except WebhookError as exc:
        return error(400, "rejected", str(exc))
    return JSONResponse(published.model_dump(mode="json"), status_code=202)


async def _publish_batch(hub: Hub, payload: dict[str, Any], header_key: str | None) -> Response:
    items = payload["events"]
    if header_key is not None:
        message = "an Idempotency-Key header applies to a single event; give each event of a batch its idempotency_key"
        return error(422, "invalid_batch", message)
    extra = sorted(str(key) for key in payload if key != "events")
    if extra or not isinstance(items, list) or not items:
        message = 'a batch is {"events": [event, ...]} with at least one event and no other field'
        return error(422, "invalid_batch", message)
    try:
        published = await hub.service.publish_events(items)
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
    return JSONResponse(
        {"events": events, "published": len(events) - duplicates, "duplicates": duplicates}, status_code=202
    )


def _in_batch(index: int, problem: str) -> str:
    """ "data.id: ..." of the third event is "events[2].data.id: ..."; "event: ..." is "events[2]: ..."."""
    whole = problem.removeprefix("event: ")
    return f"events[{index}]: {whole}" if whole is not problem else f"events[{index}].{problem}"


def events_endpoint(hub: Hub, token: str) -> Any:
    """Build the handler. It checks the token itself too, so it is never open wherever it is mounted."""
    settings = hub.settings
    single_limit = settings.max_payload_bytes
    batch_limit = settings.max_batch_bytes
    body_limit = max(single_limit, batch_limit)

    async def publish_events(request: Request) -> Response:
        refusal = token_refusal(request.headers, token)
        if refusal is not None:
            return refusal
        try:
            setting = "WEBHOOK_MCP_MAX_BATCH_BYTES" if batch_limit >= single_limit else "WEBHOOK_MCP_MAX_PAYLOAD_BYTES"
            body = await read_body(request, body_limit, setting)
            payload = decode(body)
        except BodyError as exc:
            return exc.response
        if not isinstance(payload, dict):
            return error(
                400,
                "invalid_body",
                'body must be a JSON object: one event {"type": ..., "data": {...}} or a batch {"events": [...]}',
            )
        header_key = request.headers.get(IDEMPOTENCY_HEADER)
        if "events" in payload and "type" not in payload:
            if len(body) > batch_limit:
                return error(
                    413, "too_large", f"request body is over {batch_limit} bytes (WEBHOOK_MCP_MAX_BATCH_BYTES)"
                )
            return await _publish_batch(hub, payload, header_key)
        if len(body) > single_limit:
            return error(413, "too_large", f"request body is over {single_limit} bytes (WEBHOOK_MCP_MAX_PAYLOAD_BYTES)")
        return await _publish_one(hub, payload, header_key)

    return publish_events
