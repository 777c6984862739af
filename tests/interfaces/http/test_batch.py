"""``POST /v1/events`` with batches, the Idempotency-Key header and validation modes, through the
whole HTTP application (guard included), on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH
from webhook_mcp.storage.schema import events

pytestmark = pytest.mark.anyio

TOKEN = "batch-token"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
SHOP_ORDER = {"id": "ord_1", "total": 1999, "currency": "EUR"}


@contextlib.asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    options: dict[str, Any] = {"api_token": TOKEN, **settings}
    async with Hub.open(make_settings(database_url, **options), dispatch=False) as hub:
        app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=AUTH) as client:
            yield client, hub


async def stored_events(hub: Hub) -> int:
    return int(await hub.store.scalar(select(func.count()).select_from(events)))


async def test_a_batch_is_stored_in_order_with_repeats_and_keys(database_url: str) -> None:
    async with served(database_url) as (client, hub):
        hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        batch = {
            "events": [
                {"type": "order.created", "data": SHOP_ORDER, "idempotency_key": "ord_1"},
                {"type": "customer.created", "data": {"id": 42}},
                {"type": "order.created", "data": {**SHOP_ORDER, "total": 5}, "idempotency_key": "ord_1"},
                {"type": "order.created", "data": {"id": 7, "lines": "any shape"}},
            ]
        }
        response = await client.post(EVENTS_PATH, json=batch)
        assert response.status_code == 202, response.text
        body = response.json()
        results = body["events"]
        assert [r["type"] for r in results] == ["order.created", "customer.created", "order.created", "order.created"]
        assert [r["queued"] for r in results] == [1, 0, 1, 1]
        assert [r["duplicate"] for r in results] == [False, False, True, False]
        assert results[2]["event_id"] == results[0]["event_id"]
        assert len({r["event_id"] for r in results}) == 3
        assert (body["published"], body["duplicates"]) == (3, 1)
        assert await stored_events(hub) == 3
        assert (await hub.service.get_stats(hook.id)).pending_deliveries == 2

        again = (await client.post(EVENTS_PATH, json={"events": [batch["events"][0]]})).json()
        assert again["events"][0]["event_id"] == results[0]["event_id"] and again["duplicates"] == 1
        assert await stored_events(hub) == 3


async def test_a_batch_with_bad_items_lists_every_one_and_stores_nothing(database_url: str) -> None:
    async with served(database_url) as (client, hub):
        batch = {
            "events": [
                {"type": "order.created", "data": SHOP_ORDER},
                {"type": "order.craeted", "data": SHOP_ORDER},
                {"type": "order.created", "data": {"total": 1999}},
                "not an event",
                {"type": "order.created", "data": {"id": 1}, "idempotency_key": 5, "extra": True},
                {"type": "order.created", "data": {"id": 2}},
            ]
        }
        response = await client.post(EVENTS_PATH, json=batch)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_events"
        assert "4 of 6 events are invalid, so none was published" in error["message"]
        invalid = {item["index"]: item["problems"] for item in error["invalid"]}
        assert sorted(invalid) == [1, 2, 3, 4]
        assert invalid[1][0].startswith(
            "events[1].type: unknown event type 'order.craeted'. Did you mean: order.created"
        )
        assert invalid[2] == ["events[2].data: 'id' is a required property"]
        assert invalid[3][0].startswith("events[3]: must be a JSON object")
        assert invalid[4] == [
            "events[4].idempotency_key: must be a string",
            "events[4].extra: unknown field(s); allowed: type, data, idempotency_key",
        ]
        assert await stored_events(hub) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"events": [{"type": "order.created", "data": {"id": n}} for n in range(6)]}, 413, "too_many_events"),
        ({"events": [{"type": "order.created", "data": {"id": 1, "pad": "x" * 3000}}] * 2}, 413, "too_large"),
        ({"events": []}, 422, "invalid_batch"),
        ({"events": {"type": "order.created"}}, 422, "invalid_batch"),
        ({"events": [{"type": "order.created", "data": {"id": 1}}], "type2": 1}, 422, "invalid_batch"),
    ],
)
async def test_over_size_and_malformed_batches_are_refused(
    database_url: str, body: dict[str, Any], status: int, code: str
) -> None:
    async with served(database_url, max_batch_events=5, max_batch_bytes=5000) as (client, hub):
        response = await client.post(EVENTS_PATH, json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"]
        assert await stored_events(hub) == 0


async def test_the_idempotency_key_header_for_a_single_event(database_url: str) -> None:
    async with served(database_url) as (client, hub):
        event = {"type": "order.created", "data": SHOP_ORDER}
        first = await client.post(EVENTS_PATH, json=event, headers={"Idempotency-Key": "order-ord_1"})
        assert first.status_code == 202, first.text
        again = await client.post(EVENTS_PATH, json=event, headers={"Idempotency-Key": "order-ord_1"})
        assert again.json()["event_id"] == first.json()["event_id"] and again.json()["duplicate"] is True
        same_in_body = await client.post(
            EVENTS_PATH, json={**event, "idempotency_key": "order-ord_1"}, headers={"Idempotency-Key": "order-ord_1"}
        )
        assert same_in_body.json()["duplicate"] is True
        differing = await client.post(
            EVENTS_PATH, json={**event, "idempotency_key": "other"}, headers={"Idempotency-Key": "order-ord_1"}
        )
        assert differing.status_code == 422 and "differ" in differing.json()["error"]["message"]
        too_long = await client.post(EVENTS_PATH, json=event, headers={"Idempotency-Key": "k" * 201})
        assert too_long.status_code == 422
        assert too_long.json()["error"]["problems"][0].startswith("idempotency_key: ")
        on_a_batch = await client.post(EVENTS_PATH, json={"events": [event]}, headers={"Idempotency-Key": "b"})
        assert on_a_batch.status_code == 422 and on_a_batch.json()["error"]["code"] == "invalid_batch"
        assert await stored_events(hub) == 1


TILL_TYPES = """\
event_types:
  - name: order.created
    description: Sent when a till rings up a sale.
    schema: {type: object, required: [id, total], properties: {total: {type: integer}}}
    example: {id: S-1, total: 1999}
"""


async def test_warn_mode_accepts_and_records_the_problems(database_url: str, tmp_path: Path) -> None:
    types = tmp_path / "types.yaml"
    types.write_text(TILL_TYPES, encoding="utf-8")
    async with served(database_url, event_types_file=types) as (client, _hub):
        refused = await client.post(EVENTS_PATH, json={"type": "order.created", "data": {"id": "S-2"}})
        assert refused.status_code == 422
        assert refused.json()["error"]["problems"] == ["data: 'total' is a required property"]
    async with served(database_url, event_types_file=types, event_validation="warn") as (client, hub):
        response = await client.post(EVENTS_PATH, json={"type": "order.created", "data": {"id": "S-2", "total": "9"}})
        assert response.status_code == 202, response.text
        warned = response.json()
        assert warned["warnings"] == ["data.total: '9' is not of type 'integer'"]
        recorded = await hub.store.scalar(select(events.c.problems).where(events.c.id == warned["event_id"]))
        assert json.loads(recorded) == warned["warnings"]
        clean = await client.post(EVENTS_PATH, json={"type": "order.created", "data": {"id": "S-3", "total": 9}})
        assert clean.json()["warnings"] == []
    async with served(database_url, event_types_file=types, event_validation="off") as (client, _hub):
        response = await client.post(EVENTS_PATH, json={"type": "order.created", "data": {"anything": True}})
        assert response.status_code == 202 and response.json()["warnings"] == []
        not_an_object = await client.post(EVENTS_PATH, json={"type": "order.created", "data": [1]})
        assert not_an_object.status_code == 422


async def test_numbers_reach_receivers_exactly(database_url: str) -> None:
    async with served(database_url) as (client, hub):
        body = b'{"type": "order.created", "data": {"id": 12345678901234567890123, "total": 0.1, "n": -7}}'
        response = await client.post(EVENTS_PATH, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 202, response.text
        stored = await hub.store.scalar(select(events.c.body).where(events.c.id == response.json()["event_id"]))
        assert '"data":{"id":12345678901234567890123,"total":0.1,"n":-7}' in stored
        for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
            refused = await client.post(
                EVENTS_PATH, content=b'{"type": "order.created", "data": {"id": ' + constant + b"}}"
            )
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json", constant
            long_digits_too = (
                b'{"type": "order.created", "data": {"id": 1234567890123456789012, "x": ' + constant + b"}}"
            )
            refused = await client.post(EVENTS_PATH, content=long_digits_too)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json", constant
