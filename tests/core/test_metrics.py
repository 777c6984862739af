"""Attempt outcome classes, from what the real sender reports against real endpoints."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from conftest import LOOPBACK, Received, Receiver
from webhook_mcp.core.metrics import OUTCOMES, outcome_class
from webhook_mcp.delivery.sender import Sender

pytestmark = pytest.mark.anyio

ReceiverFactory = Callable[..., Awaitable[Receiver]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def classify(sender: Sender, url: str) -> str:
    outcome = await sender.send(url, {"content-type": "application/json"}, b"{}")
    return outcome_class(outcome.success, outcome.status_code, outcome.error)


async def test_each_failure_lands_in_its_class(receiver_factory: ReceiverFactory) -> None:
    async def hang(_received: Received, _n: int) -> web.Response:
        await never.wait()
        return web.Response()

    never = asyncio.Event()
    ok = await receiver_factory(statuses=[204])
    missing = await receiver_factory(statuses=[404])
    failing = await receiver_factory(statuses=[503])
    moved = await receiver_factory(statuses=[301], headers={"location": "https://elsewhere.example"})
    slow = await receiver_factory(responder=hang)
    sender = Sender(timeout=0.3, allowed_networks=LOOPBACK)
    strict = Sender(timeout=0.3, allowed_networks=[])
    try:
        assert await classify(sender, ok.url) == "success"
        assert await classify(sender, missing.url) == "http_4xx"
        assert await classify(sender, failing.url) == "http_5xx"
        assert await classify(sender, moved.url) == "other"
        assert await classify(sender, slow.url) == "timeout"
        assert await classify(sender, f"http://127.0.0.1:{closed_port()}/hook") == "connection_error"
        assert await classify(strict, ok.url) == "blocked_address"
    finally:
        never.set()
        await sender.aclose()
        await strict.aclose()


def test_classes_are_the_exported_label_values() -> None:
    cases = [(True, 200, None), (False, 404, None), (False, 500, None), (False, None, "timed out after 1s")]
    cases += [(False, None, "blocked: 10.0.0.1 is a private address"), (False, None, "connection refused")]
    cases += [(False, None, "not sent: no key"), (False, 302, "HTTP 302 redirect")]
    assert {outcome_class(*case) for case in cases} == set(OUTCOMES)
