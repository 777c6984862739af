"""The operator's tenant routes in the OpenAPI document (see ``tenants_api``)."""

from __future__ import annotations

from typing import Any

from webhook_mcp.core.tenancy import MAX_TENANT_NAME_LENGTH
from webhook_mcp.interfaces.http.tenants_api import TENANTS_PATH

_REF = "#/components/schemas/{model}"
_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": MAX_TENANT_NAME_LENGTH}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "The name (or body) is not valid, or the default tenant cannot be deleted.",
        401: "The bearer token is missing or wrong.",
        403: "A tenant's token (these routes are the operator's), or a read-only server.",
        404: "No tenant with that name, or no such token of it.",
        409: "Another tenant has that name (or had it and is being deleted).",
    }
    return {str(status): _json(_ref("Error"), meaning[status]) for status in (401, 403, *statuses)}


def tenant_schemas() -> dict[str, Any]:
    when = {"type": "string", "format": "date-time"}
    token_properties: dict[str, Any] = {
        "id": {"type": "integer"},
        "tenant": _NAME,
        "hint": {"type": "string", "description": "The token's first characters, to tell tokens apart."},
        "label": {"type": "string"},
        "created_at": when,
        "last_used_at": {"anyOf": [when, {"type": "null"}]},
    }
    required = ["id", "tenant", "hint", "label", "created_at"]
    token = {"type": "object", "required": required, "properties": token_properties}
    secret = {"type": "string", "description": "The token itself: shown this once, stored hashed."}
    issued = {"type": "object", "required": [*required, "token"], "properties": {**token_properties, "token": secret}}
    return {
        "Tenant": {
            "type": "object",
            "required": ["id", "name", "created_at"],
            "properties": {"id": {"type": "integer"}, "name": _NAME, "created_at": when},
        },
        "TenantName": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
        "TokenLabel": {"type": "object", "properties": {"label": {"type": "string", "maxLength": 200}}},
        "Token": token,
        "IssuedToken": issued,
    }


def _operation(operation_id: str, summary: str, responses: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    described: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": responses}
    if body is not None:
        described["requestBody"] = {
            "required": body == "TenantName",
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return described


def tenant_paths() -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True, "schema": _NAME}
    token_id = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    tenants = {"type": "object", "properties": {"tenants": {"type": "array", "items": _ref("Tenant")}}}
    tokens = {"type": "object", "properties": {"tokens": {"type": "array", "items": _ref("Token")}}}
    return {
        TENANTS_PATH: {
            "get": _operation("listTenants", "Every tenant", {"200": _json(tenants, "The tenants."), **_errors()}),
            "post": _operation(
                "createTenant",
                "Create a tenant",
                {"201": _json(_ref("Tenant"), "Created."), **_errors(400, 409)},
                "TenantName",
            ),
        },
        f"{TENANTS_PATH}/{{name}}": {
            "parameters": [name],
            "patch": _operation(
                "renameTenant",
                "Rename a tenant",
                {"200": _json(_ref("Tenant"), "Renamed."), **_errors(400, 404, 409)},
                "TenantName",
            ),
            "delete": _operation(
                "deleteTenant",
                "Delete a tenant: its tokens stop at once, its data is removed in the background",
                {"202": _json(_ref("Tenant"), "Marked deleted; its rows are being removed."), **_errors(400, 404)},
            ),
        },
        f"{TENANTS_PATH}/{{name}}/tokens": {
            "parameters": [name],
            "get": _operation(
                "listTenantTokens",
                "A tenant's tokens (never the tokens themselves)",
                {"200": _json(tokens, "The tokens."), **_errors(404)},
            ),
            "post": _operation(
                "issueTenantToken",
                "Issue a token that reaches this tenant's data only",
                {"201": _json(_ref("IssuedToken"), "The token, shown this once."), **_errors(400, 404)},
                "TokenLabel",
            ),
        },
        f"{TENANTS_PATH}/{{name}}/tokens/{{token_id}}": {
            "parameters": [name, token_id],
            "delete": _operation(
                "revokeTenantToken", "Revoke a token", {"200": _json(_ref("Token"), "Revoked."), **_errors(404)}
            ),
        },
    }
