"""What every dashboard page and action shares: templates, sessions, the read-only rule, CSRF
checks, one-time notices after actions, and the security headers of every response."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from webhook_mcp.core.errors import NotFoundError, WebhookError
from webhook_mcp.interfaces.acting import acting_for, acting_tenant, service_for_caller
from webhook_mcp.interfaces.http.auth import ONE_TENANT_SERVER_MESSAGE
from webhook_mcp.interfaces.http.callers import TokenDoor
from webhook_mcp.interfaces.web.session import NOTICE_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Session, Sessions
from webhook_mcp.service.dashboard import DashboardService
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.tenants import TenantOperations

DASHBOARD_PATH = "/ui"
logger = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

Page = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Acting:
    """Whom a session acts for, as the header shows it; ``operator``: it sees every tenant and may
    manage them (the callers ``/v1/tenants`` serves)."""

    label: str
    title: str
    operator: bool


@dataclass(frozen=True, slots=True)
class Done:
    """What an action did: a notice for the next page, and where to go (default: back)."""

    text: str
    kind: str = "ok"
    location: str | None = None


Action = Callable[[Request, FormData], Awaitable[Done | Response]]


def safe_back(value: object) -> str:
    """A dashboard path to return to; anything else (another site, a scheme) goes home."""
    text = value if isinstance(value, str) else ""
    if text.startswith(DASHBOARD_PATH + "/") and "//" not in text and "\\" not in text and len(text) < 2000:
        return text
    return DASHBOARD_PATH + "/"


def when(moment: datetime | float | str | None) -> str:
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):  # ISO 8601, as the tenant operations give times
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if future else f"{amount} ago"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}%" if value < 100 else "100%"


def pretty_json(text: str) -> str | None:
    """Indented JSON for reading (the raw body stays shown as sent); None if it is not JSON."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


class Site:
    def __init__(self, hub: Hub, door: TokenDoor | None = None) -> None:
        self.hub = hub
        self.door = door or TokenDoor(hub.settings.api_token, TenantOperations(hub.store))
        self._readers: dict[int | None, DashboardService] = {None: DashboardService(hub.service)}
        self.sessions = Sessions(hub.settings.api_token)
        self.read_only = hub.settings.read_only
        self.env = Environment(
            loader=PackageLoader("webhook_mcp.interfaces.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=when, ago=ago, ms=milliseconds, pct=percent, pretty_json=pretty_json)
        self.env.globals.update(base=DASHBOARD_PATH)

    @property
    def service(self) -> WebhookService:
        """The service as the signed-in caller may see it (one tenant's, for a tenant's session)."""
        return service_for_caller(self.hub.service)

    @property
    def reader(self) -> DashboardService:
        tenant_id = acting_tenant()
        reader = self._readers.get(tenant_id)
        if reader is None:
            if len(self._readers) > 1000:
                self._readers = {None: self._readers[None]}
            reader = self._readers[tenant_id] = DashboardService(self.service)
        return reader

    async def tenant_of(self, session: Session) -> tuple[bool, int | None]:
        """Whether the session still stands, and the tenant it acts for (None: every tenant). A
        tenant's session ends when its token is revoked or its tenant deleted; the admin's acts
        for what the server acts for (every tenant, or the one ``serve --tenant`` named)."""
        if not session.tenant_key:
            return True, acting_tenant()
        tenant_id = await self.door.tenant_of_hash(session.tenant_key)
        return tenant_id is not None, tenant_id

    async def acting(self, session: Session, tenant_id: int | None) -> Acting:
        """Who the header says is signed in, and for which tenant."""
        if tenant_id is None:
            how = "the admin token" if self.sessions.sign_in_required else "this loopback server, which needs no token"
            return Acting("admin · all tenants", f"Signed in through {how}: every tenant's webhooks are shown", True)
        found = await self.hub.store.find_tenant(tenant_id)
        name = str(found.name) if found is not None else f"#{tenant_id}"
        if session.tenant_key:
            return Acting(
                f"tenant {name}", f"Signed in with a token of tenant {name}: only its webhooks are shown", False
            )
        return Acting(
            f"admin · tenant {name}",
            f"This server was started for tenant {name} (serve --tenant or WEBHOOK_MCP_TENANT): only its webhooks "
            "are shown",
            False,
        )

    def refuse_unless_operator(self, request: Request) -> Response | None:
        """The 403 page for a caller who may not manage tenants (None for the admin over every tenant)."""
        if acting_tenant() is None:
            return None
        session: Session | None = getattr(request.state, "session", None)
        if session is not None and session.tenant_key:
            message = (
                "Tenants are managed by the admin: sign in with the server's API token (WEBHOOK_MCP_API_TOKEN). "
                "A tenant's token sees its own tenant's webhooks only."
            )
        else:
            message = ONE_TENANT_SERVER_MESSAGE[0].upper() + ONE_TENANT_SERVER_MESSAGE[1:] + "."
        return self.problem(request, 403, "Admin only", message)

    # -- responses --------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        notice = self.sessions.open_notice(request.cookies.get(NOTICE_COOKIE))
        html = self.env.get_template(template).render(
            request=request,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            csrf=self.sessions.csrf_token(session) if session else "",
            signed_in=session is not None,
            acting=getattr(request.state, "acting", None),
            sign_in_required=self.sessions.sign_in_required,
            can_act=not self.read_only and session is not None,
            read_only=self.read_only,
            notice=notice,
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if NOTICE_COOKIE in request.cookies:
            response.delete_cookie(NOTICE_COOKIE, path=DASHBOARD_PATH)
        return response

    def problem(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "problem.html", status, title=title, message=message)

    def set_session(self, request: Request, response: Response, cookie: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            path=DASHBOARD_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # -- wrappers for routes ------------------------------------------------------------------

    def page(self, handler: Page) -> Page:
        """A GET page: needs a session (a loopback server without a token hands one out)."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.verify(request.cookies.get(SESSION_COOKIE))
            fresh = None
            standing, tenant_id = (False, None) if session is None else await self.tenant_of(session)
            if session is None or not standing:
                if self.sessions.sign_in_required:
                    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                    return RedirectResponse(f"{DASHBOARD_PATH}/login?next={target}", status_code=303)
                session, fresh = self.sessions.issue()
                tenant_id = acting_tenant()
            request.state.session = session
            request.state.acting = await self.acting(session, tenant_id)
            try:
                with acting_for(tenant_id):
                    response = await handler(request)
            except NotFoundError as exc:
                response = self.problem(request, 404, "Not found", str(exc))
            except WebhookError as exc:
                response = self.problem(request, 400, "That did not work", str(exc))
            if fresh is not None:
                self.set_session(request, response, fresh)
            return response

        return endpoint

    def action(self, handler: Action) -> Page:
        """A POST action: a live session, a writable server and the session's CSRF token, or a
        403 that says which is missing; then post/redirect/get with a one-time notice."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.verify(request.cookies.get(SESSION_COOKIE))
            standing, tenant_id = (False, None) if session is None else await self.tenant_of(session)
            if session is None or not standing:
                return self.problem(
                    request, 403, "Signed out", "Your session has ended: sign in again, then repeat the action."
                )
            request.state.session = session
            request.state.acting = await self.acting(session, tenant_id)
            if self.read_only:
                return self.problem(
                    request,
                    403,
                    "Read-only",
                    "This server is read-only (WEBHOOK_MCP_READ_ONLY): the dashboard shows webhooks but changes "
                    "nothing. Ask the operator to make the change.",
                )
            form = await request.form()
            given = form.get("csrf")
            if not isinstance(given, str) or not self.sessions.csrf_matches(session, given):
                return self.problem(
                    request,
                    403,
                    "Refused",
                    "The form was stale or sent from another page (its CSRF token did not match this session); "
                    "reload the page and try again.",
                )
            back = safe_back(form.get("back"))
            try:
                with acting_for(tenant_id):
                    done = await handler(request, form)
            except WebhookError as exc:
                done = Done(str(exc), "error")
            if isinstance(done, Response):
                return done
            logger.info("dashboard %s: %s", request.url.path, done.text)
            response = RedirectResponse(done.location or back, status_code=303)
            response.set_cookie(
                NOTICE_COOKIE,
                self.sessions.seal_notice(done.kind, done.text),
                max_age=60,
                path=DASHBOARD_PATH,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response

        return endpoint
