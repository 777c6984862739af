"""The dashboard's tenant screens over HTTP, on SQLite and PostgreSQL: the admin creates, renames and
deletes tenants and issues and revokes their tokens with the CLI's rules and messages; a tenant's
session, a read-only server and a form without its CSRF token change nothing; the header says
whom the session acts for, and the webhooks list can show one tenant's webhooks."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.interfaces.acting import acting_for
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.service.tenants import TenantOperations

pytestmark = pytest.mark.anyio

ADMIN = "admin-token"
BASE = "http://127.0.0.1:8000"
EVENT = "order.created"


@contextlib.asynccontextmanager
async def dashboard(
    database_url: str, *, serving: str | None = None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Hub, TenantOperations, httpx.ASGITransport]]:
    """A browser on the HTTP app over a fresh database (and the transport, for another browser);
    ``serving``: a tenant the server is started for (created first), as ``serve --tenant`` does."""
    async with Hub.open(make_settings(database_url, **settings), dispatch=False) as hub:
        ops = TenantOperations(hub.store)
        tenant_id = None if serving is None else (await ops.create(serving)).id
        with acting_for(tenant_id):
            app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000, tenant_id=tenant_id)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                yield client, hub, ops, transport


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN) -> None:
    signed_in = await client.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/", signed_in.text[:300]


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def act(client: httpx.AsyncClient, path: str, csrf: str, **form: str) -> str:
    """POST an action as its form does; the text of the page it leads to (with its notice)."""
    done = await client.post(path, data={"csrf": csrf, "back": "/ui/tenants", **form})
    assert done.status_code == 303, (path, done.status_code, done.text[:300])
    return (await client.get(done.headers["location"])).text


async def names(ops: TenantOperations) -> list[str]:
    return [tenant.name for tenant in await ops.list_tenants()]


async def test_the_admin_creates_renames_and_deletes_tenants(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, _hub, ops, _app):
        await sign_in(client)
        page = await client.get("/ui/tenants")
        assert page.status_code == 200 and "admin · all tenants" in page.text and 'href="/ui/tenants"' in page.text
        csrf = csrf_of(page)
        created = await client.post("/ui/tenants", data={"csrf": csrf, "name": "acme"})
        assert created.status_code == 303 and created.headers["location"] == "/ui/tenants/acme"
        assert "Tenant &#39;acme&#39; created" in (await client.get("/ui/tenants/acme")).text
        for name, message in (
            ("acme", "a tenant named &#39;acme&#39; exists already"),
            ("Acme Shop", "tenant name &#39;Acme Shop&#39; is not valid; use 1-63 lower-case letters"),
            ("", "tenant name &#39;&#39; is not valid"),
        ):
            assert message in await act(client, "/ui/tenants", csrf, name=name), name
        assert await names(ops) == ["default", "acme"]
        renamed = await act(client, "/ui/tenants/acme/rename", csrf, name="acme-eu")
        assert "Tenant &#39;acme&#39; is now &#39;acme-eu&#39;" in renamed
        assert await names(ops) == ["default", "acme-eu"]
        for name, message in (("default", "named &#39;default&#39; exists already"), ("9lives", "is not valid")):
            assert message in await act(client, "/ui/tenants/acme-eu/rename", csrf, name=name), name
        assert "no tenant named &#39;acme&#39;" in await act(client, "/ui/tenants/acme/rename", csrf, name="x")
        assert "not confirmed; tenant &#39;acme-eu&#39; was not deleted" in await act(
            client, "/ui/tenants/acme-eu/delete", csrf, confirm="acme"
        )
        deleted = await act(client, "/ui/tenants/acme-eu/delete", csrf, confirm="acme-eu")
        assert "Tenant &#39;acme-eu&#39; deleted" in deleted and "its data is being removed" in deleted
        assert await names(ops) == ["default"]

        async def purged() -> bool:
            return [t.name for t in await ops.overview()] == ["default"]

        await wait_until(purged)


async def test_default_cannot_be_deleted_and_says_so(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, _hub, ops, _app):
        await sign_in(client)
        page = await client.get("/ui/tenants/default")
        assert page.status_code == 200 and "tenant cannot be deleted" in page.text
        assert 'popovertarget="confirm-delete"' not in page.text
        refused = await act(client, "/ui/tenants/default/delete", csrf_of(page), confirm="default")
        assert "the &#39;default&#39; tenant cannot be deleted: it owns everything published without" in refused
        assert await names(ops) == ["default"]
        assert (await client.get("/ui/tenants/nobody")).status_code == 404
        bad = await client.get("/ui/tenants/No%20Such")
        assert bad.status_code == 400 and "is not valid" in bad.text


async def test_tokens_are_shown_once_listed_by_hint_and_revoked(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, hub, ops, app):
        acme = await ops.create("acme")
        hook = await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", [EVENT])
        await hub.service.create_webhook("https://default.example/in", [EVENT])
        await sign_in(client)
        csrf = csrf_of(await client.get("/ui/tenants/acme"))
        shown = await client.post("/ui/tenants/acme/tokens", data={"csrf": csrf, "label": "storefront"})
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        token = re.search(r'<code id="token">(wmt_[^<]+)</code>', shown.text)
        assert token and "Shown this once" in shown.text and 'data-copy="token"' in shown.text
        (listed,) = await ops.list_tokens("acme")
        page = (await client.get("/ui/tenants/acme")).text
        assert listed.hint in page and "storefront" in page and token.group(1) not in page
        too_long = await act(client, "/ui/tenants/acme/tokens", csrf, label="x" * 201)
        assert "a token&#39;s label is at most 200 characters" in too_long
        # The token signs a fresh browser in, which sees acme only.
        async with httpx.AsyncClient(transport=app, base_url=BASE) as shop:
            await sign_in(shop, token.group(1))
            home = await shop.get("/ui/")
            assert "tenant acme" in home.text and f"/ui/webhooks/{hook.id}" in home.text
            assert "default.example" not in home.text
            missing = await act(client, "/ui/tenants/acme/tokens/999/revoke", csrf)
            assert "no token with id 999 of tenant &#39;acme&#39;" in missing
            revoked = await act(client, f"/ui/tenants/acme/tokens/{listed.id}/revoke", csrf)
            assert f"Token {listed.id} ({listed.hint}) of tenant &#39;acme&#39; revoked" in revoked
            assert await ops.list_tokens("acme") == []
            ended = await shop.get("/ui/")
            assert ended.status_code == 303 and "/ui/login" in ended.headers["location"]


async def test_a_tenant_session_gets_403_and_no_link(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, hub, ops, _app):
        acme = await ops.create("acme")
        await ops.create("other")
        await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", [EVENT])
        await hub.service.create_webhook("https://default.example/in", [EVENT])
        await sign_in(client, (await ops.issue_token("acme")).token)
        home = await client.get("/ui/?tenant=other")  # not the admin's filter: ignored
        assert home.status_code == 200 and "tenant acme" in home.text and "acme.example" in home.text
        assert "/ui/tenants" not in home.text and "default.example" not in home.text
        assert 'name="tenant"' not in home.text
        for path in ("/ui/tenants", "/ui/tenants/acme", "/ui/tenants/other"):
            refused = await client.get(path)
            assert refused.status_code == 403 and "Tenants are managed by the admin" in refused.text, path
        csrf = csrf_of(home)
        for path, form in (
            ("/ui/tenants", {"name": "mine"}),
            ("/ui/tenants/acme/rename", {"name": "mine"}),
            ("/ui/tenants/other/delete", {"confirm": "other"}),
            ("/ui/tenants/acme/tokens", {}),
            ("/ui/tenants/acme/tokens/1/revoke", {}),
        ):
            refused = await client.post(path, data={"csrf": csrf, **form})
            assert refused.status_code == 403 and "managed by the admin" in refused.text, path
        assert await names(ops) == ["default", "acme", "other"] and len(await ops.list_tokens()) == 1


async def test_a_read_only_server_shows_tenants_and_changes_nothing(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN, read_only=True) as (client, _hub, ops, _app):
        await ops.create("acme")
        await ops.issue_token("acme")
        await sign_in(client)
        listing = await client.get("/ui/tenants")
        assert listing.status_code == 200 and "acme" in listing.text and "Create tenant" not in listing.text
        page = await client.get("/ui/tenants/acme")
        assert page.status_code == 200 and "popovertarget" not in page.text and "Revoke" not in page.text
        csrf = csrf_of(page)  # the sign-out form's
        (token,) = await ops.list_tokens("acme")
        for path, form in (
            ("/ui/tenants", {"name": "new"}),
            ("/ui/tenants/acme/rename", {"name": "renamed"}),
            ("/ui/tenants/acme/delete", {"confirm": "acme"}),
            ("/ui/tenants/acme/tokens", {}),
            (f"/ui/tenants/acme/tokens/{token.id}/revoke", {}),
        ):
            refused = await client.post(path, data={"csrf": csrf, **form})
            assert refused.status_code == 403 and "read-only" in refused.text, path
        assert await names(ops) == ["default", "acme"] and len(await ops.list_tokens()) == 1


async def test_tenant_actions_need_the_sessions_csrf_token(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, _hub, ops, _app):
        await ops.create("acme")
        await sign_in(client)
        for form in ({"name": "new"}, {"name": "new", "csrf": "forged"}):
            refused = await client.post("/ui/tenants", data=form)
            assert refused.status_code == 403 and "CSRF" in refused.text
        for path in ("/ui/tenants/acme/delete", "/ui/tenants/acme/tokens", "/ui/tenants/acme/rename"):
            refused = await client.post(path, data={"confirm": "acme", "name": "x"})
            assert refused.status_code == 403 and "CSRF" in refused.text, path
        assert await names(ops) == ["default", "acme"] and await ops.list_tokens() == []
        client.cookies.clear()
        assert (await client.get("/ui/tenants")).status_code == 303  # to the sign-in page


async def test_a_loopback_server_without_a_token_is_the_admin(database_url: str) -> None:
    async with dashboard(database_url) as (client, _hub, ops, _app):
        page = await client.get("/ui/tenants")
        assert page.status_code == 200 and "admin · all tenants" in page.text and "no sign-in" in page.text
        assert "Tenant &#39;acme&#39; created" in await act(client, "/ui/tenants", csrf_of(page), name="acme")
        assert await names(ops) == ["default", "acme"]


async def test_a_server_started_for_one_tenant_shows_it_and_keeps_tenants_to_the_operator(database_url: str) -> None:
    async with dashboard(database_url, serving="acme", api_token=ADMIN) as (client, hub, ops, _app):
        acme = await ops.require("acme")
        await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", [EVENT])
        await hub.service.create_webhook("https://default.example/in", [EVENT])
        await sign_in(client)
        home = await client.get("/ui/")
        assert "admin · tenant acme" in home.text and "acme.example" in home.text
        assert "default.example" not in home.text and "/ui/tenants" not in home.text
        refused = await client.get("/ui/tenants")
        assert refused.status_code == 403 and "started for one tenant" in refused.text
        created = await client.post("/ui/tenants", data={"csrf": csrf_of(home), "name": "new"})
        assert created.status_code == 403 and await names(ops) == ["default", "acme"]


async def test_the_admin_can_list_one_tenants_webhooks(database_url: str) -> None:
    async with dashboard(database_url, api_token=ADMIN) as (client, hub, ops, _app):
        await sign_in(client)
        await hub.service.create_webhook("https://default.example/in", [EVENT])
        alone = await client.get("/ui/")
        assert 'name="tenant"' not in alone.text  # one tenant: nothing to choose
        acme = await ops.create("acme")
        await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", [EVENT])
        both = await client.get("/ui/")
        assert "acme.example" in both.text and "default.example" in both.text and 'name="tenant"' in both.text
        one = await client.get("/ui/?tenant=acme")
        assert "acme.example" in one.text and "default.example" not in one.text
        assert '<option value="acme" selected>' in one.text
        listing = (await client.get("/ui/tenants")).text
        assert 'href="/ui/?tenant=acme"' in listing
        missing = await client.get("/ui/?tenant=nobody")
        assert missing.status_code == 404 and "no tenant named &#39;nobody&#39;" in missing.text
        assert (await client.get("/ui/?tenant=Bad!")).status_code == 400
