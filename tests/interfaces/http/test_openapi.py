"""The served OpenAPI document describes what the server really accepts and answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH
from webhook_mcp.interfaces.http.openapi import OPENAPI_PATH

pytestmark = pytest.mark.anyio

TOKEN = "openapi-token"
SHOP_ORDER = {"id": "ord_1", "total": 1999, "currency": "EUR"}


@contextlib.asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    async with Hub.open(make_settings(database_url, api_token=TOKEN, **settings), dispatch=False) as hub:
        app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000)
        headers = {"authorization": f"Bearer {TOKEN}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=headers) as client:
            yield client, hub


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": document["components"]})


async def test_real_requests_and_answers_match_the_document(database_url: str) -> None:
    async with served(database_url, max_batch_events=3) as (client, hub):
        await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        fetched = await client.get(OPENAPI_PATH)
        assert fetched.status_code == 200
        document = fetched.json()
        assert document["openapi"].startswith("3.1")
        for schema in document["components"]["schemas"].values():
            Draft202012Validator.check_schema(schema)
        operation = document["paths"][EVENTS_PATH]["post"]
        request_schema = validator(document, operation["requestBody"]["content"]["application/json"]["schema"])

        single = {"type": "order.created", "data": SHOP_ORDER, "idempotency_key": "k1"}
        batch = {"events": [single, {"type": "order.created", "data": {"id": 2}}]}
        bad_batch = {"events": [{"type": "order.created", "data": {}}]}
        cases: list[tuple[Any, dict[str, str], int]] = [
            (single, {}, 202),
            (batch, {}, 202),
            ({"type": "order.created", "data": {"id": 3}}, {"Idempotency-Key": "k3"}, 202),
            (bad_batch, {}, 422),
            ({"type": "order.nope", "data": {"id": 1}}, {}, 422),
            ({"events": [single] * 4}, {}, 413),
            ([1, 2], {}, 400),
            (single, {"authorization": "Bearer wrong"}, 401),
        ]
        for body, headers, status in cases:
            if status == 202:
                assert request_schema.is_valid(body), body
            response = await client.post(EVENTS_PATH, json=body, headers=headers)
            assert response.status_code == status, (body, response.text)
            documented = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            errors = list(validator(document, documented).iter_errors(response.json()))
            assert errors == [], (status, response.json(), errors)
        assert not request_schema.is_valid({"type": "order.created"})
        assert not request_schema.is_valid({"events": []})
        assert not request_schema.is_valid({"type": "order.created", "data": {}, "extra": 1})


async def test_the_tenant_routes_answer_as_documented(database_url: str) -> None:
    async with served(database_url) as (client, hub):
        document = (await client.get(OPENAPI_PATH)).json()
        paths = document["paths"]
        publish = {p["name"] for p in paths[EVENTS_PATH]["post"]["parameters"]}
        assert "X-Webhook-Tenant" in publish
        issued = {}
        calls: list[tuple[str, str, str, Any, int]] = [
            ("post", "/v1/tenants", "/v1/tenants", {"name": "acme"}, 201),
            ("post", "/v1/tenants", "/v1/tenants", {"name": "acme"}, 409),
            ("get", "/v1/tenants", "/v1/tenants", None, 200),
            ("patch", "/v1/tenants/{name}", "/v1/tenants/acme", {"name": "acme-eu"}, 200),
            ("patch", "/v1/tenants/{name}", "/v1/tenants/nobody", {"name": "x"}, 404),
            ("post", "/v1/tenants/{name}/tokens", "/v1/tenants/acme-eu/tokens", {"label": "app"}, 201),
            ("get", "/v1/tenants/{name}/tokens", "/v1/tenants/acme-eu/tokens", None, 200),
            ("delete", "/v1/tenants/{name}/tokens/{token_id}", "/v1/tenants/acme-eu/tokens/{id}", None, 200),
            ("delete", "/v1/tenants/{name}", "/v1/tenants/default", None, 400),
            ("delete", "/v1/tenants/{name}", "/v1/tenants/acme-eu", None, 202),
        ]
        for method, template, path, body, status in calls:
            operation = paths[template][method]
            if body is not None:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert validator(document, schema).is_valid(body), (template, body)
            url = path.format(id=issued.get("id"))
            response = await client.request(method.upper(), url, json=body)
            assert response.status_code == status, (method, url, response.text)
            documented = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            errors = list(validator(document, documented).iter_errors(response.json()))
            assert errors == [], (method, url, response.json(), errors)
            if status == 201 and "token" in response.json():
                issued = response.json()
        assert hub is not None
