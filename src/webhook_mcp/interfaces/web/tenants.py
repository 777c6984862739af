"""The admin's tenant screens: every tenant with its counts, one tenant with its tokens, and the
actions on them (create, rename, delete, issue and revoke tokens). Each calls the same
``TenantOperations`` method as ``webhook-mcp tenants``/``tokens`` and ``/v1/tenants``, so the rules
and the error messages are theirs; only the callers ``/v1/tenants`` serves get in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.interfaces.web.site import DASHBOARD_PATH, Action, Done, Page, Site
from webhook_mcp.service.tenants import TenantOperations

TENANTS_PAGE = f"{DASHBOARD_PATH}/tenants"


def tenant_page(name: str) -> str:
    return f"{TENANTS_PAGE}/{quote(name, safe='')}"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


class TenantScreens:
    def __init__(self, site: Site) -> None:
        self.site = site

    @property
    def ops(self) -> TenantOperations:
        """The operations the token door and ``/v1/tenants`` share (one cache to clear, one set of purges)."""
        return self.site.door.tenants

    # -- who may: the admin over every tenant --------------------------------------------------

    def page(self, handler: Callable[[Request], Awaitable[Response]]) -> Page:
        async def admin_page(request: Request) -> Response:
            return self.site.refuse_unless_operator(request) or await handler(request)

        return self.site.page(admin_page)

    def action(self, handler: Action) -> Page:
        async def admin_action(request: Request, form: FormData) -> Done | Response:
            return self.site.refuse_unless_operator(request) or await handler(request, form)

        return self.site.action(admin_action)

    # -- pages ----------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        tenants = await self.ops.overview()
        return self.site.render(request, "tenants.html", tenants=tenants)

    async def tenant(self, request: Request) -> Response:
        name = request.path_params["name"]
        summary = await self.ops.summary(name)
        tokens = await self.ops.list_tokens(name)
        return self.site.render(request, "tenant.html", tenant=summary, tokens=tokens)

    # -- actions ----------------------------------------------------------------------------------

    async def create(self, request: Request, form: FormData) -> Done:
        created = await self.ops.create(_text(form, "name"))
        self.site.door.forget()  # a name looked up before it existed is not remembered as missing
        return Done(
            f"Tenant {created.name!r} created. Issue it a token below: the token signs its shop in here and "
            "reaches its webhooks and POST /v1/events only.",
            location=tenant_page(created.name),
        )

    async def rename(self, request: Request, form: FormData) -> Done:
        old = request.path_params["name"]
        renamed = await self.ops.rename(old, _text(form, "name"))
        self.site.door.forget()
        return Done(
            f"Tenant {old!r} is now {renamed.name!r}; its tokens keep working.", location=tenant_page(renamed.name)
        )

    async def delete(self, request: Request, form: FormData) -> Done:
        name = request.path_params["name"]
        await self.ops.require(name)
        if _text(form, "confirm") != name:
            raise InvalidArgumentError(f"not confirmed; tenant {name!r} was not deleted (type its name to confirm)")
        deleted = await self.ops.delete(name)
        self.site.door.forget()
        self.ops.purge_in_background(deleted.id)
        return Done(
            f"Tenant {deleted.name!r} deleted: its tokens no longer work and its webhooks deliver nothing more; "
            "its data is being removed in the background.",
            location=TENANTS_PAGE,
        )

    async def issue(self, request: Request, form: FormData) -> Response:
        """The new token on a page of its own, never cached: the only time anyone sees it."""
        issued = await self.ops.issue_token(request.path_params["name"], _text(form, "label"))
        return self.site.render(request, "token.html", issued=issued, tenant_path=tenant_page(issued.info.tenant))

    async def revoke(self, request: Request, form: FormData) -> Done:
        revoked = await self.ops.revoke_token(int(request.path_params["token_id"]), request.path_params["name"])
        self.site.door.forget()
        return Done(
            f"Token {revoked.id} ({revoked.hint}) of tenant {revoked.tenant!r} revoked: it stops working at once "
            "on this server, within a few seconds on the others."
        )
