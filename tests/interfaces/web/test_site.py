"""The dashboard over HTTP without a browser: who gets in, what the guard still demands of every
other route, CSRF, read-only mode, a server without a token, and bad input."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import select

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.web.charts import attempts_chart, latency_chart, nice_ceiling, success_chart
from webhook_mcp.interfaces.web.session import Sessions
from webhook_mcp.service.dashboard import HourPoint
from webhook_mcp.storage.schema import webhooks

pytestmark = pytest.mark.anyio

TOKEN = "dashboard-token"
BASE = "http://127.0.0.1:8000"
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@contextlib.asynccontextmanager
async def dashboard(
    sqlite_url: str, transport: Literal["sse", "streamable-http"] = "streamable-http", **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    async with Hub.open(make_settings(sqlite_url, **settings), dispatch=False) as hub:
        app = create_http_app(hub, transport, "127.0.0.1", 8000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield client, hub


async def sign_in(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/ui/login", data={"token": token, "next": "/ui/"})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def enabled(hub: Hub, webhook_id: int) -> bool:
    return bool(await hub.store.scalar(select(webhooks.c.enabled).where(webhooks.c.id == webhook_id)))


async def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_wrong_tokens(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN) as (client, _):
        first = await client.get("/ui/log?outcome=failed")
        assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=/ui/log%3Foutcome%3Dfailed"
        for wrong, message in (("nope", "not this server"), ("  ", "Enter the server")):
            refused = await sign_in(client, wrong)
            assert refused.status_code == 401 and message in refused.text and "set-cookie" not in refused.headers
        accepted = await client.post("/ui/login", data={"token": TOKEN, "next": "/ui/log?outcome=failed"})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/ui/log?outcome=failed"
        cookie = accepted.headers["set-cookie"].lower()
        assert (
            "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie and "max-age=28800" in cookie
        )
        assert TOKEN not in accepted.headers["set-cookie"]
        page = await client.get("/ui/")
        assert page.status_code == 200 and "Webhooks" in page.text
        assert (
            page.headers["cache-control"] == "no-store"
            and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        )
        # Never sent anywhere but the dashboard.
        for target in ("https://evil.example/", "//evil.example/ui/", "/mcp", "/ui//evil.example"):
            bounced = await client.post("/ui/login", data={"token": TOKEN, "next": target})
            assert bounced.headers["location"] == "/ui/", target


async def test_every_other_route_still_needs_the_bearer_token(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN) as (client, _):
        await sign_in(client)
        assert (await client.get("/ui/")).status_code == 200
        # The session cookie opens the dashboard only (it is not even sent elsewhere by a browser).
        session = client.cookies.get("webhook_mcp_session")
        assert session
        cookie = {"cookie": f"webhook_mcp_session={session}"}
        assert (await client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **cookie})).status_code == 401
        assert (await client.post("/v1/events", json={}, headers=cookie)).status_code == 401
        for path in ("/uix", "/ui-admin", "/u", "/static/dashboard.css", "/anything"):
            assert (await client.get(path, headers=cookie)).status_code == 401, path
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/anything", headers=bearer)).status_code == 404  # past the guard
        assert (await client.get("/ui")).status_code in (307, 308)
        # The Host and Origin checks apply to the dashboard as to everything else.
        assert (await client.get("/ui/", headers={"host": "evil.example:8000"})).status_code == 421
        foreign = await client.post("/ui/login", data={"token": TOKEN}, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403


async def test_the_sse_transport_serves_it_too(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, "sse", api_token=TOKEN) as (client, _):
        assert (await client.get("/ui/")).status_code == 303
        await sign_in(client)
        assert (await client.get("/ui/log")).status_code == 200
        session = {"cookie": f"webhook_mcp_session={client.cookies.get('webhook_mcp_session')}"}
        assert (await client.get("/sse", headers=session)).status_code == 401


async def test_static_files_need_no_session(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN) as (client, _):
        css = await client.get("/ui/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert (await client.get("/ui/static/dashboard.js")).status_code == 200
        assert (await client.get("/ui/static/../session.py")).status_code == 404


async def test_actions_need_the_sessions_csrf_token(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN) as (client, hub):
        hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        await sign_in(client)
        page = await client.get(f"/ui/webhooks/{hook.id}")
        token = csrf_of(page)
        for form in ({}, {"csrf": "forged"}, {"csrf": Sessions("another-token").csrf_token(Sessions("x").issue()[0])}):
            refused = await client.post(f"/ui/webhooks/{hook.id}/disable", data=form)
            assert refused.status_code == 403 and "CSRF" in refused.text
        assert await enabled(hub, hook.id)
        done = await client.post(
            f"/ui/webhooks/{hook.id}/disable", data={"csrf": token, "back": f"/ui/webhooks/{hook.id}"}
        )
        assert done.status_code == 303 and done.headers["location"] == f"/ui/webhooks/{hook.id}"
        assert not await enabled(hub, hook.id)
        shown = await client.get(done.headers["location"])
        assert "is disabled" in shown.text  # the one-time notice
        assert "is disabled" not in (await client.get(done.headers["location"])).text
        # A signed-out browser cannot act either, even with a token it saw before.
        client.cookies.clear()
        signed_out = await client.post(f"/ui/webhooks/{hook.id}/enable", data={"csrf": token})
        assert signed_out.status_code == 403 and "sign in again" in signed_out.text
        assert not await enabled(hub, hook.id)


async def test_errors_from_the_service_come_back_as_notices(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN) as (client, hub):
        hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        await sign_in(client)
        token = csrf_of(await client.get(f"/ui/webhooks/{hook.id}"))
        for path, form, message in (
            (f"/ui/webhooks/{hook.id}/rotate", {"grace_hours": "9999"}, "grace_hours must be between"),
            (f"/ui/webhooks/{hook.id}/rotate", {"grace_hours": "soon"}, "grace hours must be a number"),
            (f"/ui/webhooks/{hook.id}/replay", {"since_hours": "-1"}, "since_hours must be positive"),
            (f"/ui/webhooks/{hook.id}/test", {"event": "order.exploded"}, "order.exploded"),
            ("/ui/deliveries/77/retry", {}, "no delivery with id 77"),
            ("/ui/webhooks/77/disable", {}, "no webhook with id 77"),
        ):
            response = await client.post(path, data={"csrf": token, "back": "/ui/", **form})
            assert response.status_code == 303, path
            assert message in (await client.get(response.headers["location"])).text, path
        assert (await client.get("/ui/webhooks/77")).status_code == 404
        assert (await client.get("/ui/attempts/77")).status_code == 404
        bad = await client.get("/ui/log?since=yesterday")
        assert bad.status_code == 400 and "is not a date and time" in bad.text
        assert (await client.get("/ui/log?webhook=abc")).status_code == 400


async def test_read_only_hides_and_refuses_every_action(sqlite_url: str) -> None:
    async with dashboard(sqlite_url, api_token=TOKEN, read_only=True) as (client, hub):
        hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        await sign_in(client)
        page = await client.get(f"/ui/webhooks/{hook.id}")
        assert page.status_code == 200 and "read-only" in page.text
        assert "popovertarget" not in page.text and "Show secret" not in page.text
        token = csrf_of(page)  # the sign-out form's
        for action in ("disable", "enable", "test", "replay", "rotate", "secret"):
            refused = await client.post(f"/ui/webhooks/{hook.id}/{action}", data={"csrf": token})
            assert refused.status_code == 403 and "read-only" in refused.text, action
        assert (await client.post("/ui/deliveries/1/retry", data={"csrf": token})).status_code == 403
        assert await enabled(hub, hook.id)
        assert (await hub.service.get_webhook(hook.id)).secret_rotation_ends_at is None
        out = await client.post("/ui/logout", data={"csrf": token})
        assert out.status_code == 303 and (await client.get("/ui/")).status_code == 303


async def test_without_a_token_a_loopback_server_needs_no_sign_in_but_still_checks_csrf(sqlite_url: str) -> None:
    async with dashboard(sqlite_url) as (client, hub):
        hook = await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        assert (await client.get("/ui/login")).headers["location"] == "/ui/"
        page = await client.get(f"/ui/webhooks/{hook.id}")
        assert page.status_code == 200 and "no sign-in" in page.text and "Sign out" not in page.text
        refused = await client.post(f"/ui/webhooks/{hook.id}/disable", data={"csrf": "guess"})
        assert refused.status_code == 403 and await enabled(hub, hook.id)
        done = await client.post(f"/ui/webhooks/{hook.id}/disable", data={"csrf": csrf_of(page)})
        assert done.status_code == 303 and not await enabled(hub, hook.id)
        secret = await client.post(f"/ui/webhooks/{hook.id}/secret", data={"csrf": csrf_of(page)})
        assert (await hub.service.get_secret(hook.id)).secret in secret.text


def test_sessions_expire_and_refuse_tampering() -> None:
    now = [1_000_000.0]
    sessions = Sessions(TOKEN, clock=lambda: now[0])
    session, cookie = sessions.issue()
    assert sessions.verify(cookie) == session
    expires, nonce, signature = cookie.split(".")
    for forged in (
        f"{int(expires) + 3600}.{nonce}.{signature}",
        f"{expires}.other.{signature}",
        f"{expires}.{nonce}.{signature[:-2]}xx",
        "",
        "garbage",
        "x" * 500,
    ):
        assert sessions.verify(forged) is None, forged
    assert Sessions("another-token").verify(cookie) is None  # a new token ends every session
    assert sessions.csrf_matches(session, sessions.csrf_token(session))
    assert not sessions.csrf_matches(sessions.issue()[0], sessions.csrf_token(session))
    notice = sessions.seal_notice("ok", "done | with a bar")
    assert sessions.open_notice(notice) == ("ok", "done | with a bar")
    assert sessions.open_notice(notice.replace(".", ".x", 1)) is None
    now[0] += 8 * 3600
    assert sessions.verify(cookie) is None
    assert sessions.open_notice(notice) is None


def test_charts_scale_to_the_data_and_escape_their_labels() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 240, 251, 4000)] == [1, 0.5, 1, 10, 20, 250, 500, 5000]
    hour = 1_700_000_000 // 3600 * 3600.0
    points = [HourPoint(hour + i * 3600, 0, 0, None, None) for i in range(24)]
    points[5] = HourPoint(hour + 5 * 3600, 10, 9, 120.0, 250.0)
    points[6] = HourPoint(hour + 6 * 3600, 4, 0, 900.0, 1000.0)
    bars = str(attempts_chart(points))
    assert bars.count('class="ok"') == 1 and bars.count('class="bad"') == 2  # one legend key, one bar each
    assert "10 attempts, 9 succeeded, 1 failed" in bars and bars.count("<title>") == 24
    rate = str(success_chart(points))
    assert rate.count("<polyline") == 1 and "no attempts" in rate and "90.0% of 10 attempts" in rate
    latency = str(latency_chart(points))
    assert ">1 s<" in latency and latency.count("<polyline") == 2
    lone = [HourPoint(hour, 1, 1, 5.0, 10.0), *points[1:4]]
    assert str(success_chart(lone)).count("<circle") == 1
