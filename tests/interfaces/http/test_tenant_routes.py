"""Every HTTP door with tenant tokens, on SQLite and PostgreSQL: the operator's routes refuse a
tenant's token, POST /v1/events publishes for the token's tenant only, and the dashboard signed
in with one tenant's token finds another tenant's ids exactly as it finds ids that do not exist."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import insert, select, update

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.service.tenants import TenantOperations
from webhook_mcp.storage.schema import deliveries, delivery_attempts

pytestmark = pytest.mark.anyio

ADMIN = "admin-token"
BASE = "http://127.0.0.1:8000"
EVENT = "order.created"
MISSING = 999_999


@dataclass
class World:
    http: httpx.AsyncClient
    hub: Hub
    ops: TenantOperations
    a_token: str
    a_hook: int
    b_token: str
    b_hook: int


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with Hub.open(make_settings(database_url, api_token=ADMIN), dispatch=False) as hub:
        ops = TenantOperations(hub.store)
        a, b = await ops.create("shop-a"), await ops.create("shop-b")
        a_hook = await hub.service.for_tenant(a.id).create_webhook("https://a.example/in", [EVENT])
        b_hook = await hub.service.for_tenant(b.id).create_webhook("https://b.example/in", [EVENT])
        a_token, b_token = (await ops.issue_token("shop-a")).token, (await ops.issue_token("shop-b")).token
        app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            yield World(http, hub, ops, a_token, a_hook.id, b_token, b_hook.id)


async def test_the_operators_routes_refuse_a_tenant_token(world: World) -> None:
    calls = [
        ("GET", "/v1/tenants"),
        ("POST", "/v1/tenants"),
        ("PATCH", "/v1/tenants/shop-a"),
        ("DELETE", "/v1/tenants/shop-b"),
        ("GET", "/v1/tenants/shop-a/tokens"),
        ("POST", "/v1/tenants/shop-a/tokens"),
        ("DELETE", "/v1/tenants/shop-b/tokens/1"),
        ("GET", "/metrics"),
    ]
    for method, path in calls:
        response = await world.http.request(method, path, headers=bearer(world.a_token), json={"name": "x"})
        assert response.status_code == 403, (method, path, response.text)
        assert "this route is the operator's" in response.json()["error"]["message"]
    assert [t.name for t in await world.ops.list_tenants()] == ["default", "shop-a", "shop-b"]


async def test_the_operator_manages_tenants_and_tokens_over_http(world: World) -> None:
    http, admin = world.http, bearer(ADMIN)
    created = await http.post("/v1/tenants", json={"name": "shop-c"}, headers=admin)
    assert created.status_code == 201 and created.json()["name"] == "shop-c"
    taken = await http.post("/v1/tenants", json={"name": "shop-c"}, headers=admin)
    assert taken.status_code == 409 and "exists already" in taken.json()["error"]["message"]
    bad = await http.post("/v1/tenants", json={"name": "Shop C"}, headers=admin)
    assert bad.status_code == 400 and "is not valid" in bad.json()["error"]["message"]
    renamed = await http.patch("/v1/tenants/shop-c", json={"name": "shop-cc"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "shop-cc"
    issued = await http.post("/v1/tenants/shop-cc/tokens", json={"label": "app"}, headers=admin)
    assert issued.status_code == 201 and issued.json()["token"].startswith("wmt_")
    token, token_id = issued.json()["token"], issued.json()["id"]
    listed = (await http.get("/v1/tenants/shop-cc/tokens", headers=admin)).json()["tokens"]
    assert [t["id"] for t in listed] == [token_id] and "token" not in listed[0]
    assert listed[0]["last_used_at"] is None
    assert (await http.get("/v1/openapi.json", headers=bearer(token))).status_code == 200
    used = (await http.get("/v1/tenants/shop-cc/tokens", headers=admin)).json()["tokens"]
    assert used[0]["last_used_at"] is not None
    wrong_owner = await http.delete(f"/v1/tenants/shop-a/tokens/{token_id}", headers=admin)
    assert wrong_owner.status_code == 404
    assert (await http.delete(f"/v1/tenants/shop-cc/tokens/{token_id}", headers=admin)).status_code == 200
    assert (await http.get("/v1/openapi.json", headers=bearer(token))).status_code == 401  # revoked: at once
    assert (await http.get("/v1/tenants/nobody/tokens", headers=admin)).status_code == 404
    deleted = await http.delete("/v1/tenants/shop-cc", headers=admin)
    assert deleted.status_code == 202
    names = [t["name"] for t in (await http.get("/v1/tenants", headers=admin)).json()["tenants"]]
    assert names == ["default", "shop-a", "shop-b"]
    refused = await http.delete("/v1/tenants/default", headers=admin)
    assert refused.status_code == 400 and "cannot be deleted" in refused.json()["error"]["message"]


async def test_a_deleted_tenants_token_stops_at_once(world: World) -> None:
    assert (await world.http.delete("/v1/tenants/shop-b", headers=bearer(ADMIN))).status_code == 202
    response = await world.http.post(
        "/v1/events", json={"type": EVENT, "data": {"id": "o"}}, headers=bearer(world.b_token)
    )
    assert response.status_code == 401 and "unknown or revoked" in response.json()["error"]["message"]


async def test_events_are_published_for_the_tokens_tenant(world: World) -> None:
    http, event = world.http, {"type": EVENT, "data": {"id": "ord_1"}}
    mine = await http.post("/v1/events", json=event, headers=bearer(world.a_token))
    assert mine.status_code == 202 and mine.json()["queued"] == 1
    a_stats = await world.hub.service.get_stats(world.a_hook, 24)
    b_stats = await world.hub.service.get_stats(world.b_hook, 24)
    assert (a_stats.pending_deliveries, b_stats.pending_deliveries) == (1, 0)
    named = await http.post("/v1/events", json=event, headers={**bearer(world.a_token), "x-webhook-tenant": "shop-a"})
    assert named.status_code == 202
    for other in ("shop-b", "no-such-shop"):
        headers = {**bearer(world.a_token), "x-webhook-tenant": other}
        theirs = await http.post("/v1/events", json=event, headers=headers)
        assert theirs.status_code == 403 and "its own tenant" in theirs.json()["error"]["message"]
    as_admin = await http.post("/v1/events", json=event, headers={**bearer(ADMIN), "x-webhook-tenant": "shop-b"})
    assert as_admin.status_code == 202 and as_admin.json()["queued"] == 1
    unknown = await http.post("/v1/events", json=event, headers={**bearer(ADMIN), "x-webhook-tenant": "nobody"})
    assert unknown.status_code == 404 and "no tenant named 'nobody'" in unknown.json()["error"]["message"]
    created = await http.post("/v1/tenants", json={"name": "nobody"}, headers=bearer(ADMIN))
    assert created.status_code == 201  # and a name just found missing is not remembered as missing
    known = await http.post("/v1/events", json=event, headers={**bearer(ADMIN), "x-webhook-tenant": "nobody"})
    assert known.status_code == 202, known.text
    default = await http.post("/v1/events", json=event, headers=bearer(ADMIN))
    assert default.status_code == 202 and default.json()["queued"] == 0  # the default tenant has no webhook


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def same_shape(text: str, given: int) -> str:
    """A page or notice with the id asked for replaced, so two answers can be compared."""
    return re.sub(rf"(with id |/|webhook=){given}\b", r"\1<id>", text)


async def test_the_dashboard_signed_in_with_a_tenant_token_sees_only_its_tenant(world: World) -> None:
    http = world.http
    signed_in = await http.post("/ui/login", data={"token": world.a_token, "next": "/ui/"})
    assert signed_in.status_code == 303
    home = await http.get("/ui/")
    assert "a.example" in home.text and "b.example" not in home.text
    await assert_found_as_missing(http, "/ui/webhooks/{id}", world.b_hook)
    csrf = csrf_of(home)
    actions = ["enable", "disable", "test", "rotate", "secret"]
    for action in actions:
        answers = []
        for hook_id in (world.b_hook, MISSING):
            done = await http.post(f"/ui/webhooks/{hook_id}/{action}", data={"csrf": csrf, "back": "/ui/"})
            assert done.status_code == 303, (action, done.text[:300])
            shown = await http.get("/ui/")
            answers.append(re.findall(r'class="notice[^"]*"[^>]*>([^<]*)<', same_shape(shown.text, hook_id)))
        assert answers[0] == answers[1] and answers[0], (action, answers)
    assert (await world.hub.service.get_webhook(world.b_hook)).enabled  # untouched


async def assert_found_as_missing(http: httpx.AsyncClient, page: str, theirs_id: int) -> None:
    theirs = await http.get(page.format(id=theirs_id))
    missing = await http.get(page.format(id=MISSING))
    assert theirs.status_code == missing.status_code, page
    assert same_shape(theirs.text, theirs_id) == same_shape(missing.text, MISSING), page
    assert "b.example" not in theirs.text and "ord_b" not in theirs.text


async def _b_delivery_and_attempt(world: World) -> tuple[int, int]:
    """A dead delivery of shop B's webhook and an attempt of it, as the dispatcher leaves them."""
    b = await world.ops.require("shop-b")
    await world.hub.service.for_tenant(b.id).publish(EVENT, {"id": "ord_b"})
    d, now = deliveries.c, time.time()

    def seed() -> tuple[int, int]:
        with world.hub.store.engine.begin() as conn:
            delivery_id, event_id = conn.execute(select(d.id, d.event_id).where(d.webhook_id == world.b_hook)).one()
            conn.execute(update(deliveries).where(d.id == delivery_id).values(state="failed", completed_at=now))
            attempt = {
                "webhook_id": world.b_hook,
                "delivery_id": delivery_id,
                "event_id": event_id,
                "event_type": EVENT,
                "attempt_number": 1,
                "is_test": False,
                "created_at": now,
                "status_code": 500,
                "response_ms": 12.0,
                "success": False,
                "error": "HTTP 500 from ord_b",
            }
            attempt_id = conn.execute(insert(delivery_attempts).values(**attempt)).inserted_primary_key[0]
            return int(delivery_id), int(attempt_id)

    return await asyncio.to_thread(seed)


async def test_the_dashboards_delivery_routes_find_another_tenants_ids_as_missing(world: World) -> None:
    delivery_id, attempt_id = await _b_delivery_and_attempt(world)
    http = world.http
    await http.post("/ui/login", data={"token": world.a_token, "next": "/ui/"})
    await assert_found_as_missing(http, "/ui/attempts/{id}", attempt_id)
    await assert_found_as_missing(http, "/ui/log?webhook={id}", world.b_hook)
    csrf = csrf_of(await http.get("/ui/"))
    answers = []
    for target in (delivery_id, MISSING):
        done = await http.post(f"/ui/deliveries/{target}/retry", data={"csrf": csrf, "back": "/ui/"})
        assert done.status_code == 303
        shown = await http.get("/ui/")
        answers.append(re.findall(r'class="notice[^"]*"[^>]*>([^<]*)<', same_shape(shown.text, target)))
    assert answers[0] == answers[1] and answers[0], answers
    state = await world.hub.store.scalar(select(deliveries.c.state).where(deliveries.c.id == delivery_id))
    assert state == "failed"  # not revived by another tenant


async def test_a_revoked_tokens_dashboard_session_ends(world: World) -> None:
    await world.http.post("/ui/login", data={"token": world.a_token, "next": "/ui/"})
    assert (await world.http.get("/ui/")).status_code == 200
    [token] = await world.ops.list_tokens("shop-a")
    assert (await world.http.delete(f"/v1/tenants/shop-a/tokens/{token.id}", headers=bearer(ADMIN))).status_code == 200
    again = await world.http.get("/ui/")
    assert again.status_code == 303 and "/ui/login" in again.headers["location"]
