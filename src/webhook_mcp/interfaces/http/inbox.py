"""The inbox route on the HTTP application: requests to ``/inbox/<id>`` are recorded by the hub's
inboxes and answered with the status each inbox was opened with.

It sits in front of the guard: senders (this server's own deliveries, or anything a user points at
the URL) carry no bearer token, and the unguessable id is the credential. Every other path goes
to the guarded application untouched."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook_mcp.delivery.inbox import ANSWER, INBOX_PREFIX, Inboxes


def serve_inboxes(app: ASGIApp, inboxes: Inboxes, host: str, port: int) -> ASGIApp:
    """``app`` with the inbox route in front, and the inboxes told their URLs live here."""
    inboxes.serve_at(f"http://{_reachable(host)}:{port}")
    return InboxRoute(app, inboxes)


def _reachable(host: str) -> str:
    """The address this process's own sender reaches a server bound to ``host`` at."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class InboxRoute:
    def __init__(self, app: ASGIApp, inboxes: Inboxes) -> None:
        self.app = app
        self.inboxes = inboxes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(INBOX_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.inboxes.max_body_bytes:
                break
        headers = [(name, value) for name, value in request.headers.items()]
        status = self.inboxes.record(path[len(INBOX_PREFIX) :], request.method, headers, body)
        if status is None:
            response = PlainTextResponse("no such inbox (it may have expired); open_inbox opens one\n", 404)
        else:
            response = PlainTextResponse(ANSWER.decode(), status)
        await response(scope, receive, send)
