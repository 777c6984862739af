"""The HTTP API described as OpenAPI 3.1, served at ``GET /v1/openapi.json`` so a shop can
generate a client. Response schemas come from the same pydantic models the server answers with."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webhook_mcp import __version__
from webhook_mcp.core.models import PublishedEvent
from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH
from webhook_mcp.interfaces.http.openapi_tenants import tenant_paths, tenant_schemas
from webhook_mcp.service.publishing import MAX_IDEMPOTENCY_KEY

OPENAPI_PATH = "/v1/openapi.json"
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _error_schema() -> dict[str, Any]:
    problems = {"type": "array", "items": {"type": "string"}, "description": '"path: message" per problem.'}
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string", "description": "What was wrong and what to do."},
                    "problems": problems,
                    "invalid": {
                        "type": "array",
                        "description": "Every invalid event of a batch.",
                        "items": {
                            "type": "object",
                            "required": ["index", "problems"],
                            "properties": {"index": {"type": "integer", "minimum": 0}, "problems": problems},
                        },
                    },
                },
            }
        },
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    published = PublishedEvent.model_json_schema(ref_template=_REF)
    event = {
        "type": "object",
        "description": "One event. Its data must be accepted by its type's schema (see the MCP tool "
        "get_webhook_sample_payload); for built-in types only data.id is required.",
        "required": ["type", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {
                "type": "string",
                "description": "Event type name, e.g. order.created.",
                "examples": ["order.created"],
            },
            "data": {
                "type": "object",
                "description": "The event's data, sent to receivers as is.",
                "examples": [{"id": "ord_1", "total": 1999, "currency": "EUR"}],
            },
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
                "description": "The same key within the idempotency window returns the first event.",
            },
        },
    }
    return {
        "Event": event,
        "EventBatch": {
            "type": "object",
            "description": "Events stored all or nothing, in one transaction.",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch_events,
                    "items": _ref("Event"),
                }
            },
        },
        "PublishedEvent": published,
        "PublishedBatch": {
            "type": "object",
            "required": ["events", "published", "duplicates"],
            "properties": {
                "events": {"type": "array", "items": _ref("PublishedEvent"), "description": "In the batch's order."},
                "published": {"type": "integer", "description": "New events stored."},
                "duplicates": {"type": "integer", "description": "Events whose idempotency key was seen before."},
            },
        },
        "Error": _error_schema(),
        **tenant_schemas(),
    }


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _publish_operation(settings: Settings) -> dict[str, Any]:
    return {
        "operationId": "publishEvents",
        "summary": "Publish one event or a batch to every subscribed webhook of one tenant",
        "description": "A 202 means written: the events are durable and will be delivered (at least once).",
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "For a single event, instead of its idempotency_key field.",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
            },
            {
                "name": "X-Webhook-Tenant",
                "in": "header",
                "required": False,
                "description": "With the admin token: the tenant (by name) to publish for; default: 'default'. "
                "A tenant's token publishes for its own tenant (naming another is refused).",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [_ref("Event"), _ref("EventBatch")]}}},
        },
        "responses": {
            "202": {
                "description": "Stored and queued.",
                "content": {
                    "application/json": {"schema": {"oneOf": [_ref("PublishedEvent"), _ref("PublishedBatch")]}}
                },
            },
            "400": _error_response("The body is not JSON, or not a JSON object."),
            "401": _error_response("The bearer token is missing or wrong."),
            "403": _error_response("A tenant's token naming another tenant in X-Webhook-Tenant."),
            "404": _error_response("The admin token naming a tenant that does not exist in X-Webhook-Tenant."),
            "413": _error_response(
                f"Over {settings.max_payload_bytes} bytes for one event, {settings.max_batch_bytes} for a batch, "
                f"or more than {settings.max_batch_events} events."
            ),
            "422": _error_response("An event is invalid (a batch: every invalid event, by index); nothing stored."),
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhook-mcp HTTP API",
            "version": __version__,
            "description": "Publish events to the webhooks subscribed to them, and (with the admin token) "
            "manage tenants and their tokens. A tenant's token reaches its own tenant only.",
        },
        "security": [{"bearer": []}],
        "paths": {
            EVENTS_PATH: {"post": _publish_operation(settings)},
            **tenant_paths(),
            OPENAPI_PATH: {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_endpoint(settings: Settings) -> Any:
    document = openapi_document(settings)

    async def serve_openapi(request: Request) -> Response:
        return JSONResponse(document)

    return serve_openapi
