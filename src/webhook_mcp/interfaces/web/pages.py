"""The dashboard's pages (GET): webhooks with their health, one webhook with its charts, the
delivery log with filters, one attempt as it went out, and signing in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from webhook_mcp.core.catalog import TEST_EVENT
from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.interfaces.acting import acting_for, acting_tenant
from webhook_mcp.interfaces.web.charts import attempts_chart, latency_chart, success_chart
from webhook_mcp.interfaces.web.session import SESSION_COOKIE
from webhook_mcp.interfaces.web.site import DASHBOARD_PATH, Site, safe_back
from webhook_mcp.service.dashboard import HEALTH_WINDOW_HOURS, OUTCOMES, DashboardService, parse_filter, webhook_state
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.tenants import looks_like_tenant_token, token_hash
from webhook_mcp.storage.dashboard import AttemptFilter

OUTCOME_LABELS = {
    "all": "All outcomes",
    "success": "Succeeded",
    "failed": "Failed",
    "http_4xx": "Failed: 4xx",
    "http_5xx": "Failed: 5xx",
    "no_response": "Failed: no response",
    "test": "Tests",
}
TIME_FORMAT = "%Y-%m-%dT%H:%M"


def _id_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise InvalidArgumentError(f"{name} must be a whole number, got {text[:40]!r}; use the page's links")
    return int(text)


def _time_param(request: Request, name: str, label: str) -> float | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    try:
        return datetime.strptime(text[:16], TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise InvalidArgumentError(
            f"the {label} time {text[:40]!r} is not a date and time such as 2026-12-04T09:30 (UTC)"
        ) from None


class Pages:
    def __init__(self, site: Site) -> None:
        self.site = site

    @property
    def service(self) -> WebhookService:
        return self.site.service

    @property
    def reader(self) -> DashboardService:
        return self.site.reader

    async def webhooks(self, request: Request) -> Response:
        tenants, chosen = await self._tenant_filter(request)
        if chosen is None:
            health = await self.reader.health()
        else:
            with acting_for(chosen):  # the admin looks at one tenant's webhooks as its own token would
                health = await self.site.reader.health()
        states = ("enabled", "disabled", "auto-disabled")
        counts = {state: sum(1 for row in health if row.state == state) for state in states}
        totals = {
            "pending": sum(row.pending for row in health),
            "held": sum(row.held for row in health),
            "dead": sum(row.dead for row in health),
        }
        return self.site.render(
            request,
            "webhooks.html",
            rows=health,
            counts=counts,
            totals=totals,
            window=HEALTH_WINDOW_HOURS,
            tenants=tenants,
            tenant=request.query_params.get("tenant", "") if chosen is not None else "",
        )

    async def _tenant_filter(self, request: Request) -> tuple[list[str], int | None]:
        """For the admin over every tenant: the tenants' names (to choose from, when there are
        several) and the id of the one ``?tenant=NAME`` chose; for anyone else, nothing."""
        if acting_tenant() is not None:
            return [], None
        ops = self.site.door.tenants
        names = [tenant.name for tenant in await ops.list_tenants()]
        name = request.query_params.get("tenant", "").strip()
        if not name:
            return names, None
        return names, int((await ops.require(name)).id)

    async def webhook(self, request: Request) -> Response:
        webhook_id = int(request.path_params["webhook_id"])
        webhook = await self.service.get_webhook(webhook_id)
        stats = await self.service.get_stats(webhook_id, HEALTH_WINDOW_HOURS)
        points = await self.reader.hourly(webhook_id)
        recent = await self.reader.log(AttemptFilter(webhook_id=webhook_id), size=10)
        return self.site.render(
            request,
            "webhook.html",
            webhook=webhook,
            state=webhook_state(webhook),
            stats=stats,
            window=HEALTH_WINDOW_HOURS,
            charts=[attempts_chart(points), success_chart(points), latency_chart(points)],
            week_attempts=sum(p.attempts for p in points),
            recent=recent.entries,
            test_events=[TEST_EVENT, *webhook.events],
        )

    async def log(self, request: Request) -> Response:
        query = request.query_params
        chosen: dict[str, Any] = {
            "webhook": query.get("webhook", ""),
            "outcome": query.get("outcome", "all"),
            "event": query.get("event", ""),
            "since": query.get("since", ""),
            "until": query.get("until", ""),
        }
        context: dict[str, Any] = {
            "chosen": chosen,
            "outcomes": [(name, OUTCOME_LABELS[name]) for name in OUTCOMES],
            "event_types": self.service.catalog.names(),
            "webhooks": (await self.service.list_webhooks()).webhooks,
            "page": None,
            "error": None,
        }
        try:
            selected = parse_filter(
                _id_param(request, "webhook"),
                chosen["outcome"],
                chosen["event"] or None,
                _time_param(request, "since", "'from'"),
                _time_param(request, "until", "'to'"),
            )
            context["page"] = await self.reader.log(
                selected, before=_id_param(request, "before"), after=_id_param(request, "after")
            )
        except InvalidArgumentError as exc:
            context["error"] = str(exc)
            return self.site.render(request, "log.html", 400, **context)
        filters = {key: value for key, value in chosen.items() if value and not (key == "outcome" and value == "all")}
        context["filters"] = filters
        return self.site.render(request, "log.html", **context)

    async def attempt(self, request: Request) -> Response:
        detail = await self.reader.attempt(int(request.path_params["attempt_id"]))
        return self.site.render(request, "attempt.html", detail=detail)

    async def sign_in_form(self, request: Request) -> Response:
        if not self.site.sessions.sign_in_required:
            return RedirectResponse(f"{DASHBOARD_PATH}/", status_code=303)
        return self.site.render(request, "login.html", next=safe_back(request.query_params.get("next")), error=None)

    async def sign_in(self, request: Request) -> Response:
        """Check the token typed in (the server's, or a tenant's); a session cookie on success, the
        form again otherwise."""
        form = await request.form()
        target = safe_back(form.get("next"))
        given = form.get("token")
        sessions = self.site.sessions
        typed = given.strip() if isinstance(given, str) else ""
        tenant_key = token_hash(typed) if looks_like_tenant_token(typed) else ""
        if tenant_key and await self.site.door.tenant_of_hash(tenant_key) is not None:
            return self._signed_in(request, target, tenant_key)  # a session that sees its tenant only
        if not sessions.sign_in_required:
            return RedirectResponse(target, status_code=303)
        if not typed or not sessions.token_matches(typed):
            message = (
                "That is not this server's API token (WEBHOOK_MCP_API_TOKEN) nor a live tenant token; "
                "check it and try again."
            )
            if not typed:
                message = "Enter the server's API token (the value of WEBHOOK_MCP_API_TOKEN) or a tenant token."
            return self.site.render(request, "login.html", 401, next=target, error=message)
        return self._signed_in(request, target, "")

    def _signed_in(self, request: Request, target: str, tenant_key: str) -> Response:
        _session, cookie = self.site.sessions.issue(tenant_key)
        response = RedirectResponse(target, status_code=303)
        self.site.set_session(request, response, cookie)
        return response

    async def sign_out(self, request: Request) -> Response:
        """Forget the session cookie (read-only servers too); CSRF-checked so no page signs one out."""
        sessions = self.site.sessions
        session = sessions.verify(request.cookies.get(SESSION_COOKIE))
        given = (await request.form()).get("csrf")
        if session is not None and not (isinstance(given, str) and sessions.csrf_matches(session, given)):
            return self.site.problem(request, 403, "Refused", "Reload the page, then sign out again.")
        response = RedirectResponse(f"{DASHBOARD_PATH}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=DASHBOARD_PATH)
        return response
