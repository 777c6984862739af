"""Who may talk to the HTTP transports: a loopback bind by default, a bearer token for anything
else, and Host/Origin checks against DNS rebinding on every route (MCP endpoints and the ingest
route alike), applied by one ASGI guard in front of the whole app."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook_mcp.core.errors import ConfigurationError
from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.acting import acting_for, acting_tenant
from webhook_mcp.interfaces.http.callers import OPERATOR, Caller, SessionOwners, TokenDoor
from webhook_mcp.interfaces.http.headers import RequestHeaders, request_headers

logger = logging.getLogger(__name__)

LOOPBACK_AUTHORITIES = ("127.0.0.1", "localhost", "[::1]")
TOKEN_HINT = "send the header 'Authorization: Bearer <token>', the token being the server's WEBHOOK_MCP_API_TOKEN"


def is_loopback(host: str) -> bool:
    """Only this machine can reach the address (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse, before anything binds, to expose the tools beyond this machine without a token."""
    if settings.api_token or is_loopback(host):
        return
    raise ConfigurationError(
        f"refusing to serve on {host} without a token: an address other than loopback exposes the webhook "
        "tools to the network. Set WEBHOOK_MCP_API_TOKEN (e.g. to the output of "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))') and send it as "
        "'Authorization: Bearer <token>', or bind 127.0.0.1 (the default)."
    )


def _authority(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


def transport_security(settings: Settings, host: str, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server bound to ``host:port``: Host must name the bind
    address (for loopback, any loopback name) on that port, or be listed by the operator. Browser
    pages may call it from its own origin; for a loopback bind also from other local ports (tools
    such as MCP Inspector), which a rebound page never has."""
    names = [_authority(host)]
    origins = [f"http://{names[0]}:{port}"]
    if is_loopback(host):
        names += [name for name in LOOPBACK_AUTHORITIES if name not in names]
        origins = [f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")]
    hosts = [f"{name}:{port}" for name in names]
    if port == 80:
        hosts += names
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*hosts, *settings.allowed_hosts],
        allowed_origins=[*origins, *settings.allowed_origins],
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def token_refusal(headers: Headers, token: str) -> Response | None:
    """A 401 unless the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        challenge = 'Bearer realm="webhook-mcp"'
        message = f"this server needs a bearer token: {TOKEN_HINT}"
        return _error(401, "unauthorized", message, {"www-authenticate": challenge})
    if hmac.compare_digest(given.strip().encode("latin-1"), token.encode("ascii")):
        return None
    challenge = 'Bearer realm="webhook-mcp", error="invalid_token"'
    return _error(401, "unauthorized", f"the bearer token is wrong: {TOKEN_HINT}", {"www-authenticate": challenge})


def _exact_hosts(security: TransportSecuritySettings) -> frozenset[bytes] | None:
    """The Host values ``security`` allows by exact match, as a request carries them (None: the
    protection is off, and the SDK's check decides alone)."""
    if not security.enable_dns_rebinding_protection:
        return None
    hosts = set()
    for host in security.allowed_hosts:
        try:
            hosts.add(host.encode("latin-1"))
        except UnicodeEncodeError:
            continue  # a Host header (decoded as latin-1) can never equal it
    return frozenset(hosts)


API_PREFIX = "/v1/"
OPERATOR_ONLY_MESSAGE = (
    "this route is the operator's: send the admin token (WEBHOOK_MCP_API_TOKEN); a tenant token reaches its "
    "own tenant's tools, dashboard and POST /v1/events only"
)
# The admin on a server started for one tenant acts for that tenant: it manages no tenants there.
ONE_TENANT_SERVER_MESSAGE = (
    "this server was started for one tenant (serve --tenant or WEBHOOK_MCP_TENANT) and acts for that tenant "
    "only: manage tenants on a server started for every tenant, or with 'webhook-mcp tenants'"
)


class HttpGuard:
    """Checks Host and Origin (as the SDK's transport security does) and then the token, for
    every HTTP request whatever its route; lifespan events pass through. Requests under
    ``signs_in_itself`` (the dashboard, whose browsers carry a session cookie made from the
    token rather than the header) get the Host and Origin checks only.

    With a ``door``, a tenant's token is accepted too: the request then runs inside
    ``acting_for(its tenant)``, so every tool and route below sees that tenant only, and the
    ``operator_only`` routes (path prefixes) answer it 403."""

    def __init__(
        self,
        app: ASGIApp,
        security: TransportSecuritySettings,
        token: str | None,
        signs_in_itself: str | None = None,
        *,
        door: TokenDoor | None = None,
        operator_only: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.security = TransportSecurityMiddleware(security)
        self._plain_hosts = _exact_hosts(security)
        self.token = token
        self.signs_in_itself = signs_in_itself
        self.door = door
        self.operator_only = operator_only
        self.sessions = SessionOwners()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        admitted = await self._admit(scope)
        if isinstance(admitted, Caller):
            # The HTTP API's routes (publishing among them) never hand out an MCP session.
            if self.door is not None and not scope["path"].startswith(API_PREFIX):
                send = self.sessions.wrap(send, admitted)
            # A tenant's token acts for its tenant; the admin's keeps what the server acts for
            # (every tenant, or the one it was started for).
            with acting_for(admitted.tenant_id if admitted.tenant_id is not None else acting_tenant()):
                await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await admitted(scope, receive, send)

    async def _admit(self, scope: Scope) -> Caller | Response:
        headers = request_headers(scope)
        if not self._plainly_allowed(headers):
            rebinding = await self.security.validate_request(Request(scope))
            if rebinding is not None:
                return self._rebinding_error(rebinding.status_code, headers)
        path = scope["path"]
        if self._under(path, self.signs_in_itself):
            return OPERATOR  # the dashboard's own session decides whom it acts for
        if self.door is not None:
            caller = await self.door.caller(headers)
            tenant_caller = isinstance(caller, Caller) and caller.tenant_id is not None
            if tenant_caller and any(self._under(path, prefix) for prefix in self.operator_only):
                return _error(403, "operator_only", OPERATOR_ONLY_MESSAGE)
            if isinstance(caller, Caller) and not self.sessions.allows(headers, caller):
                message = "this MCP session was started with another token; start a new session with this one"
                return _error(403, "session_not_yours", message)
            return caller
        if self.token is not None:
            return token_refusal(headers, self.token) or OPERATOR
        return OPERATOR

    def _plainly_allowed(self, headers: RequestHeaders) -> bool:
        """The common request the SDK's Host/Origin check passes at its first test: no Origin and a
        Host listed exactly. Anything else (an Origin, a wildcard port, a refusal and its log
        line) takes the SDK's check itself."""
        if self._plain_hosts is None:
            return False
        return headers.raw_value(b"origin") is None and headers.raw_value(b"host") in self._plain_hosts

    @staticmethod
    def _under(path: str, prefix: str | None) -> bool:
        return prefix is not None and (path == prefix or path.startswith(prefix + "/"))

    @staticmethod
    def _rebinding_error(status: int, headers: Headers) -> Response:
        if status == 421:
            return _error(
                421,
                "host_not_allowed",
                f"Host {headers.get('host')!r} is not served here (DNS-rebinding protection); "
                "the operator can allow it with WEBHOOK_MCP_ALLOWED_HOSTS",
            )
        return _error(
            403,
            "origin_not_allowed",
            f"Origin {headers.get('origin')!r} may not use this server (DNS-rebinding protection); "
            "the operator can allow it with WEBHOOK_MCP_ALLOWED_ORIGINS",
        )
