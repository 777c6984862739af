"""The dashboard as one Starlette app mounted at ``/ui`` on ``serve``'s HTTP transports."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from webhook_mcp.interfaces.http.callers import TokenDoor
from webhook_mcp.interfaces.web.actions import Actions
from webhook_mcp.interfaces.web.pages import Pages
from webhook_mcp.interfaces.web.site import DASHBOARD_PATH, Site
from webhook_mcp.interfaces.web.tenants import TenantScreens
from webhook_mcp.service.hub import Hub

__all__ = ["DASHBOARD_PATH", "dashboard_app", "mount_dashboard"]


def dashboard_app(hub: Hub, door: TokenDoor | None = None) -> Starlette:
    site = Site(hub, door)
    pages = Pages(site)
    actions = Actions(site)
    tenants = TenantScreens(site)
    webhook = "/webhooks/{webhook_id:int}"
    tenant = "/tenants/{name}"
    routes = [
        Route("/", site.page(pages.webhooks)),
        Route(webhook, site.page(pages.webhook)),
        Route("/log", site.page(pages.log)),
        Route("/attempts/{attempt_id:int}", site.page(pages.attempt)),
        Route("/login", pages.sign_in_form, methods=["GET"]),
        Route("/login", pages.sign_in, methods=["POST"]),
        Route("/logout", pages.sign_out, methods=["POST"]),
        Route(f"{webhook}/enable", site.action(actions.enable), methods=["POST"]),
        Route(f"{webhook}/disable", site.action(actions.disable), methods=["POST"]),
        Route(f"{webhook}/test", site.action(actions.test), methods=["POST"]),
        Route(f"{webhook}/replay", site.action(actions.replay), methods=["POST"]),
        Route(f"{webhook}/rotate", site.action(actions.rotate), methods=["POST"]),
        Route(f"{webhook}/secret", site.action(actions.reveal_secret), methods=["POST"]),
        Route("/deliveries/{delivery_id:int}/retry", site.action(actions.retry), methods=["POST"]),
        Route("/tenants", tenants.page(tenants.index), methods=["GET"]),
        Route("/tenants", tenants.action(tenants.create), methods=["POST"]),
        Route(tenant, tenants.page(tenants.tenant), methods=["GET"]),
        Route(f"{tenant}/rename", tenants.action(tenants.rename), methods=["POST"]),
        Route(f"{tenant}/delete", tenants.action(tenants.delete), methods=["POST"]),
        Route(f"{tenant}/tokens", tenants.action(tenants.issue), methods=["POST"]),
        Route(f"{tenant}/tokens/{{token_id:int}}/revoke", tenants.action(tenants.revoke), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("webhook_mcp.interfaces.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes)


def mount_dashboard(app: Starlette, hub: Hub, door: TokenDoor | None = None) -> None:
    """Serve the dashboard under ``/ui/`` in ``app`` (the MCP transport's Starlette app)."""
    app.router.routes.append(Mount(DASHBOARD_PATH, app=dashboard_app(hub, door)))
