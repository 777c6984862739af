"""The HTTP application ``serve`` runs for the sse and streamable-http transports: the MCP
transport and the HTTP API's routes side by side, behind one guard."""

from __future__ import annotations

import logging
from typing import Literal

from starlette.types import ASGIApp

from webhook_mcp.interfaces.http.auth import HttpGuard, check_bind, transport_security
from webhook_mcp.interfaces.http.callers import TokenDoor
from webhook_mcp.interfaces.http.inbox import serve_inboxes
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH, FastRoute, events_endpoint, publishing_off
from webhook_mcp.interfaces.http.openapi import OPENAPI_PATH, openapi_endpoint
from webhook_mcp.interfaces.http.operations import METRICS_PATH, HealthRoutes, metrics_endpoint
from webhook_mcp.interfaces.http.tenants_api import TENANTS_PATH, TenantsApi
from webhook_mcp.interfaces.mcp.server import create_server
from webhook_mcp.interfaces.web.app import DASHBOARD_PATH, mount_dashboard
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.monitoring import Monitor
from webhook_mcp.service.tenants import TenantOperations

logger = logging.getLogger(__name__)


def create_http_app(
    hub: Hub,
    transport: Literal["sse", "streamable-http"],
    host: str,
    port: int,
    monitor: Monitor | None = None,
    *,
    tenant_id: int | None = None,
) -> ASGIApp:
    """The MCP transport, ``POST /v1/events``, ``/v1/tenants`` and ``/metrics`` for a server bound to
    ``host:port``, behind one guard: Host/Origin checks on every route, and the bearer token on every
    route when one is set (a tenant's token scopes the request to its tenant); ``/healthz`` and
    ``/readyz`` answer before it."""
    settings = hub.settings
    check_bind(settings, host)
    door = TokenDoor(settings.api_token, TenantOperations(hub.store))
    server = create_server(hub=hub, tenant_id=tenant_id)  # a server started for one tenant acts for it
    monitor = monitor or Monitor(hub)
    server.custom_route(METRICS_PATH, methods=["GET"])(metrics_endpoint(monitor))
    events: ASGIApp
    if settings.read_only:
        logger.info("read-only mode: %d tool(s) left out, POST %s is off", len(server.withheld), EVENTS_PATH)
        events = publishing_off("it runs read-only (WEBHOOK_MCP_READ_ONLY)")
    elif settings.api_token:
        events = events_endpoint(hub, settings.api_token, door)
        server.custom_route(EVENTS_PATH, methods=["POST"])(events)
    else:
        logger.warning("POST %s is off: set WEBHOOK_MCP_API_TOKEN to publish over HTTP", EVENTS_PATH)
        events = publishing_off(
            "start it with WEBHOOK_MCP_API_TOKEN set and send 'Authorization: Bearer <token>' "
            "(or publish with `webhook-mcp publish` or the send_event tool)"
        )
    server.custom_route(OPENAPI_PATH, methods=["GET"])(openapi_endpoint(settings))
    for path, method, endpoint in TenantsApi(door, settings.read_only).routes():
        server.custom_route(path, methods=[method])(endpoint)
    security = transport_security(settings, host, port)
    if transport == "sse":
        app = server.sse_app(transport_security=security, host=host)
    else:
        app = server.streamable_http_app(transport_security=security, host=host)
    mount_dashboard(app, hub, door)  # signs its users in itself, with a token, into a session cookie
    outer: ASGIApp = FastRoute(app, EVENTS_PATH, events)
    guarded = HttpGuard(
        outer,
        security,
        settings.api_token,
        signs_in_itself=DASHBOARD_PATH,
        door=door,
        operator_only=(TENANTS_PATH, METRICS_PATH),
    )
    # /inbox/<id>: its id is the credential; /healthz and /readyz are open, /metrics is guarded.
    return HealthRoutes(serve_inboxes(guarded, hub.inboxes, host, port), monitor)
