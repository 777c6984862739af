"""Routes for operators: ``/healthz`` and ``/readyz`` for container platforms and load balancers,
``/metrics`` for Prometheus. Health answers before the guard (a probe carries no token and names
the pod's address as Host, and the answer tells nothing about webhooks); ``/metrics`` sits behind
it, under the same token and Host/Origin rules as every other route."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook_mcp import __version__
from webhook_mcp.interfaces.http.auth import HttpGuard, check_bind, transport_security
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.monitoring import Monitor

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


class HealthRoutes:
    """Answers ``GET /healthz`` (the process runs) and ``GET /readyz`` (it can do its work: 503
    with the problems otherwise); passes everything else on to ``app``."""

    def __init__(self, app: ASGIApp, monitor: Monitor) -> None:
        self.app = app
        self.monitor = monitor
        self.started = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in (HEALTH_PATH, READY_PATH):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = JSONResponse(
                {"error": {"code": "method_not_allowed", "message": f"{path} answers GET only"}},
                status_code=405,
                headers={"allow": "GET, HEAD"},
            )
        elif path == HEALTH_PATH:
            uptime = round(time.monotonic() - self.started, 1)
            response = JSONResponse({"status": "ok", "version": __version__, "uptime_seconds": uptime})
        else:
            ready, body = await self.monitor.readiness()
            response = JSONResponse(body, status_code=200 if ready else 503)
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)


def metrics_endpoint(monitor: Monitor) -> Any:
    async def metrics(_request: Request) -> Response:
        return Response(await monitor.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics


def create_worker_app(hub: Hub, monitor: Monitor, host: str, port: int) -> ASGIApp:
    """What ``webhook-mcp worker --http-port`` serves: health, readiness and metrics only."""
    settings = hub.settings
    check_bind(settings, host)
    app = Starlette(routes=[Route(METRICS_PATH, metrics_endpoint(monitor), methods=["GET"])])
    guarded = HttpGuard(app, transport_security(settings, host, port), settings.api_token)
    return HealthRoutes(guarded, monitor)
