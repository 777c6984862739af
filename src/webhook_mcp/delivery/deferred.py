"""A sender made at its first use. Its HTTP stack (httpx, aiohttp's resolver, our HTTP/1.1 client)
is a fifth of a cold start, and an assistant's first answers (listing webhooks, reading logs)
never send anything, so a server builds the real :class:`~webhook_mcp.delivery.sender.Sender` only
when a delivery, a test or a destination check first needs it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from webhook_mcp.delivery.sender import Sender, SendOutcome


class SendsDeliveries(Protocol):
    """What the service and the dispatcher ask of a sender (a Sender, or one made on first use)."""

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome: ...

    async def check_destination(self, url: str) -> str | None: ...

    async def aclose(self) -> None: ...


class DeferredSender:
    """A Sender with the given keyword arguments, built on the first call that needs it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._sender: Sender | None = None

    @property
    def built(self) -> bool:
        return self._sender is not None

    def get(self) -> Sender:
        if self._sender is None:
            from webhook_mcp.delivery.sender import Sender

            self._sender = Sender(**self._options)
        return self._sender

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        return await self.get().send(url, headers, body)

    async def check_destination(self, url: str) -> str | None:
        return await self.get().check_destination(url)

    async def aclose(self) -> None:
        if self._sender is not None:
            await self._sender.aclose()
