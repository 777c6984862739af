"""Temporary inboxes this process serves itself: a URL that records every request it receives
(what ``stripe listen`` or webhook.site do), so a webhook can be tried with no receiver of one's own.

An inbox URL is ``<base>/inbox/<id>`` with an unguessable id. ``base`` is the HTTP server's own
address when ``serve`` runs one (the route sits on the same app), else a loopback listener opened
on demand. The sender's address guard lets exactly these URLs through although they are local
(:meth:`Inboxes.owns`); nothing else is opened by that exception. An inbox belongs to the tenant
whose caller opened it, and only that tenant's callers find it. Inboxes expire, their number is
bounded per tenant (opening one more drops that tenant's oldest), and so are the requests and
body bytes each keeps."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

INBOX_PREFIX = "/inbox/"
KEPT_REQUESTS = 50  # per inbox: the newest are kept
ANSWER = b"recorded by the webhook-mcp inbox\n"


@dataclass(slots=True)
class ReceivedRequest:
    received_at: float
    method: str
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool


@dataclass(slots=True)
class Inbox:
    id: str
    url: str
    status: int
    created_at: float
    expires_at: float
    requests: deque[ReceivedRequest] = field(default_factory=lambda: deque(maxlen=KEPT_REQUESTS))
    received: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    owner: int | None = None  # the tenant whose caller opened it (None: a caller of every tenant)


class Inboxes:
    """The open inboxes of this process, and the listener serving them when nothing else does."""

    def __init__(self, *, limit: int, ttl: float, max_body_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.ttl = ttl
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._open: dict[str, Inbox] = {}
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    def serve_at(self, base_url: str) -> None:
        """The HTTP server this process runs serves the inbox route at ``base_url``."""
        self._base_url = base_url.rstrip("/")

    async def open(self, status: int = 200, owner: int | None = None) -> Inbox:
        """A new inbox for ``owner``'s callers; each owner keeps up to ``limit`` open (its oldest
        closes), so one tenant opening many never closes another's."""
        base = self._base_url or await self._listen()
        self._prune()
        owned = [key for key, inbox in self._open.items() if inbox.owner == owner]
        for key in owned[: max(0, len(owned) - self.limit + 1)]:
            del self._open[key]
        inbox_id = secrets.token_urlsafe(18)
        now = self._clock()
        inbox = Inbox(inbox_id, f"{base}{INBOX_PREFIX}{inbox_id}", status, now, now + self.ttl, owner=owner)
        self._open[inbox_id] = inbox
        return inbox

    def find(self, inbox_id: str) -> Inbox | None:
        """Any live inbox (what the inbox route records into, and the address guard lets through)."""
        self._prune()
        return self._open.get(inbox_id)

    def find_for(self, inbox_id: str, tenant_id: int | None) -> Inbox | None:
        """A live inbox as a caller of ``tenant_id`` may see it: only its own tenant's (None: any)."""
        inbox = self.find(inbox_id)
        return inbox if inbox is not None and (tenant_id is None or inbox.owner == tenant_id) else None

    def owns(self, url: str) -> bool:
        """True only for the exact URL of a live inbox: the one exception to the address guard."""
        start = url.find(INBOX_PREFIX)
        if start < 0:
            return False
        inbox = self.find(url[start + len(INBOX_PREFIX) :])
        return inbox is not None and inbox.url == url

    def record(self, inbox_id: str, method: str, headers: Iterable[tuple[str, str]], body: bytes) -> int | None:
        """Keep one request; the status to answer, or None when there is no such inbox (404)."""
        inbox = self.find(inbox_id)
        if inbox is None:
            return None
        truncated = len(body) > self.max_body_bytes
        kept = body[: self.max_body_bytes]
        inbox.requests.append(ReceivedRequest(self._clock(), method, list(headers), kept, truncated))
        inbox.received += 1
        inbox.arrived.set()
        inbox.arrived = asyncio.Event()
        return inbox.status

    async def wait_for_request(self, inbox: Inbox, seconds: float) -> bool:
        """Wait until one more request arrives (True) or ``seconds`` pass (False)."""
        arrived = inbox.arrived
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await arrived.wait()
                return True
        return False

    def _prune(self) -> None:
        now = self._clock()
        for inbox_id in [key for key, inbox in self._open.items() if inbox.expires_at <= now]:
            del self._open[inbox_id]

    async def _listen(self) -> str:
        """A loopback listener for the inbox route, opened once on first use (stdio has no HTTP server)."""
        async with self._lock:
            if self._base_url is None:
                from aiohttp import web

                app = web.Application(client_max_size=self.max_body_bytes + 1)
                app.router.add_route("*", INBOX_PREFIX + "{inbox_id}", self._handle)
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                self._runner = runner
                host, port = runner.addresses[0][:2]
                self._base_url = f"http://{host}:{port}"
            return self._base_url

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = await request.content.read(self.max_body_bytes + 1)
        status = self.record(request.match_info["inbox_id"], request.method, list(request.headers.items()), body)
        if status is None:
            return web.Response(status=404, text="no such inbox (it may have expired); open_inbox opens one\n")
        return web.Response(status=status, body=ANSWER, content_type="text/plain")

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        self._open.clear()
        if runner is not None:
            self._base_url = None  # the listener's address goes with it
            await runner.cleanup()
