"""Running ``serve`` and ``worker`` until SIGTERM or SIGINT, and stopping cleanly: readiness turns
503, claiming stops, what was claimed but not started is handed back at once, sends in flight get
the grace period, every result is written, connections close, exit status 0. A second signal
exits at once (what is still leased comes due again when its lease ends)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING, Literal

from webhook_mcp import __version__
from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.acting import acting_for, serving_tenant
from webhook_mcp.interfaces.console import resume_gc
from webhook_mcp.service.hub import Hub
from webhook_mcp.storage import engine as database

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from webhook_mcp.interfaces.http.server import SignalFreeServer
    from webhook_mcp.interfaces.mcp.server import WebhookServer
    from webhook_mcp.service.monitoring import Monitor

logger = logging.getLogger("webhook_mcp")


class StopSignals:
    """The first SIGTERM/SIGINT asks for a clean stop; the second exits the process at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            logger.warning("second %s: exiting now; deliveries still leased come due when their lease ends", sig.name)
            logging.shutdown()
            os._exit(128 + sig)
        grace = self.settings.shutdown_grace
        logger.info("%s received: stopping (sends in flight get %g s); a second signal exits at once", sig.name, grace)
        self.requested.set()

    async def wait(self) -> None:
        await self.requested.wait()


def _http_server(settings: Settings, app: ASGIApp, host: str, port: int) -> SignalFreeServer:
    from webhook_mcp.interfaces.http.server import SignalFreeServer, uvicorn_config

    config = uvicorn_config(
        app,
        host,
        port,
        settings.log_level,
        head_timeout=settings.http_header_timeout,
        log_config=None,  # uvicorn's records go through our handler and format
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
    )
    return SignalFreeServer(config)


def log_startup(hub: Hub, role: str, listening: list[str]) -> None:
    """One line per fact, so each can be found with grep and parsed as JSON."""
    cfg = hub.settings
    logger.info("webhook-mcp %s starting as %s", __version__, role)
    logger.info(
        "%s running on %s at schema revision %s", role, database.sync_url(cfg.database_url), database.head_revision()
    )
    if hub.dispatches:
        logger.info(
            "dispatcher %s: up to %d deliveries in flight, %d per endpoint, lease %g s",
            hub.dispatcher.worker_id if hub.dispatcher is not None else "(starting after the first answer)",
            cfg.max_concurrency,
            cfg.per_endpoint_concurrency,
            cfg.lease_seconds,
        )
        logger.info(
            "retention: attempt logs %g days, finished deliveries %s, dead deliveries %s",
            cfg.log_retention_days,
            f"{cfg.delivery_retention_days:g} days" if cfg.delivery_retention_days else "kept",
            f"{cfg.dead_delivery_retention_days:g} days" if cfg.dead_delivery_retention_days else "kept",
        )
    else:
        logger.info("no dispatcher in this process: separate workers deliver")
    for line in listening:
        logger.info("%s", line)
    logger.info("SIGTERM or SIGINT stops cleanly within %g s; a second signal exits at once", cfg.shutdown_grace + 2)


def _acting_line(hub: Hub) -> list[str]:
    name = hub.settings.tenant
    return [] if name is None else [f"acting for tenant {name!r} only: its webhooks, deliveries and events"]


async def _stop(
    hub: Hub, monitor: Monitor, server: SignalFreeServer | None, serving: asyncio.Task[None] | None
) -> None:
    monitor.draining = True
    if server is not None:
        server.should_exit = True
    await hub.stop_dispatcher()
    if serving is not None:
        await serving


async def run_worker(settings: Settings, host: str, port: int | None) -> None:
    from webhook_mcp.interfaces.http.operations import create_worker_app
    from webhook_mcp.service.monitoring import Monitor

    signals = StopSignals(settings)
    async with Hub.open(settings, dispatch=True) as hub:
        monitor = Monitor(hub)
        server = serving = None
        listening = []
        if port is not None:
            server = _http_server(settings, create_worker_app(hub, monitor, host, port), host, port)
            serving = asyncio.create_task(server.serve(), name="webhook-mcp-worker-http")
            listening.append(f"health and metrics at http://{host}:{port}/healthz, /readyz, /metrics")
        log_startup(hub, "worker", listening)
        await signals.wait()
        await _stop(hub, monitor, server, serving)


async def serve_http(
    settings: Settings, transport: Literal["sse", "streamable-http"], host: str, port: int, dispatch: bool
) -> None:
    from webhook_mcp.interfaces.http.app import create_http_app
    from webhook_mcp.service.monitoring import Monitor

    signals = StopSignals(settings)
    async with Hub.open(settings, dispatch=dispatch) as hub:
        tenant_id = await serving_tenant(hub)
        monitor = Monitor(hub)
        app = create_http_app(hub, transport, host, port, monitor, tenant_id=tenant_id)
        server = _http_server(settings, app, host, port)
        with acting_for(tenant_id):  # every request's task starts from this context
            serving = asyncio.create_task(server.serve(), name="webhook-mcp-http")
        path = "/sse" if transport == "sse" else "/mcp"
        listening = [f"MCP at http://{host}:{port}{path}; /healthz, /readyz, /metrics", *_acting_line(hub)]
        log_startup(hub, f"MCP server ({transport})", listening)
        stop = asyncio.create_task(signals.wait())
        await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        await _stop(hub, monitor, server, serving)


# The first answer's follow-up (see ``_after_first_answer``) runs this long after it (time for it
# to be written out), or this long after the session opens if no tool is called by then.
AFTER_FIRST_ANSWER = 0.05
AT_THE_LATEST = 1.0


def _after_first_answer(hub: Hub, server: WebhookServer) -> None:
    """A client spawning the server waits for its first answer; the garbage collector (paused by
    the console script) resumes and the dispatcher's imports and first claims come right after
    it, so deliveries still start within a second."""
    loop = asyncio.get_running_loop()

    def settle() -> None:
        resume_gc()
        if hub.dispatches:
            hub.start_dispatcher()

    latest = loop.call_later(AT_THE_LATEST, settle)

    def answered() -> None:
        latest.cancel()
        loop.call_later(AFTER_FIRST_ANSWER, settle)

    server.after_first_answer = answered


async def serve_stdio(settings: Settings, dispatch: bool) -> None:
    """MCP over stdio until the client closes stdin or a signal arrives; the hub is opened here,
    outside the MCP session's task group, so stopping it is never cut short by that group's
    cancellation."""
    from webhook_mcp.interfaces.mcp.server import create_server

    signals = StopSignals(settings)
    async with Hub.open(settings, dispatch=dispatch, defer_dispatcher=True) as hub:
        tenant_id = await serving_tenant(hub)
        log_startup(hub, "MCP server (stdio)", _acting_line(hub))
        with acting_for(tenant_id):  # the session's task, and the handlers it starts, act for it
            server = create_server(hub=hub, tenant_id=tenant_id)
            _after_first_answer(hub, server)
            session = asyncio.create_task(server.run_stdio_async(), name="webhook-mcp-stdio")
        stop = asyncio.create_task(signals.wait())
        await asyncio.wait([session, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        session.cancel()
        await hub.stop_dispatcher()
        await asyncio.wait([session], timeout=0.5)
    if not session.done():
        # Stopped by a signal with the client still attached: the session's stdin reader is a thread
        # blocked in read(), which nothing interrupts. Everything else is stopped, written and closed.
        logger.info("stopped")
        logging.shutdown()
        os._exit(0)
