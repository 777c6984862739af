"""The built-in inbox: what it records and answers, its bounds, and the one exception it makes to
the address guard (its own exact URLs, nothing that only looks like them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from webhook_mcp.delivery.inbox import Inboxes
from webhook_mcp.delivery.sender import Sender

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def inboxes() -> AsyncIterator[Inboxes]:
    opened = Inboxes(limit=3, ttl=60, max_body_bytes=1024)
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_an_inbox_records_every_request_and_answers_its_status(inboxes: Inboxes) -> None:
    inbox = await inboxes.open(status=503)
    assert inbox.url.startswith("http://127.0.0.1:") and "/inbox/" in inbox.url
    async with httpx.AsyncClient() as client:
        answer = await client.post(inbox.url, content=b'{"a": 1}', headers={"webhook-id": "msg_1"})
        inbox.status = 200
        second = await client.put(inbox.url, content=b"x" * 2000)
        missing = await client.post(inbox.url + "x", content=b"{}")
    assert (answer.status_code, second.status_code, missing.status_code) == (503, 200, 404)
    first, big = inbox.requests
    assert (first.method, first.body, dict(first.headers)["webhook-id"]) == ("POST", b'{"a": 1}', "msg_1")
    assert (big.method, len(big.body), big.truncated) == ("PUT", 1024, True)
    assert inbox.received == 2


async def test_inboxes_expire_and_are_bounded_in_number() -> None:
    clock = Clock()
    inboxes = Inboxes(limit=2, ttl=60, max_body_bytes=100, clock=clock)
    inboxes.serve_at("http://127.0.0.1:9")  # no listener needed to count
    first, second = await inboxes.open(), await inboxes.open()
    third = await inboxes.open()
    assert inboxes.find(first.id) is None  # the oldest made room
    assert inboxes.find(second.id) is second and inboxes.owns(third.url)
    clock.now += 61
    assert inboxes.find(third.id) is None and not inboxes.owns(third.url)
    assert inboxes.record(third.id, "POST", [], b"{}") is None


async def test_each_tenant_has_its_own_inboxes_and_its_own_bound() -> None:
    inboxes = Inboxes(limit=2, ttl=60, max_body_bytes=100)
    inboxes.serve_at("http://127.0.0.1:9")
    acme = [await inboxes.open(owner=2) for _ in range(3)]
    globex = await inboxes.open(owner=3)
    assert inboxes.find(acme[0].id) is None  # acme's oldest made room for acme's third...
    assert inboxes.find_for(globex.id, 3) is globex  # ...and globex's was never at stake
    assert inboxes.find_for(acme[1].id, 2) is acme[1] and inboxes.find_for(acme[1].id, None) is acme[1]
    assert inboxes.find_for(acme[1].id, 3) is None  # another tenant's caller cannot see it
    assert inboxes.owns(acme[1].url)  # deliveries still reach it, whoever's webhook sends


async def test_the_sender_reaches_an_inbox_and_nothing_that_looks_like_one(inboxes: Inboxes) -> None:
    inbox = await inboxes.open()
    other = await inboxes.open()
    await inboxes.aclose()  # an inbox that no longer exists must not stay reachable
    inbox = await inboxes.open()
    port = inbox.url.split(":")[2].split("/")[0]
    look_alikes = [
        inbox.url + "/",
        inbox.url + "?x=1",
        inbox.url + "x",
        inbox.url.replace("127.0.0.1", "localhost"),
        inbox.url.replace("http://", "https://"),
        f"http://127.0.0.1:{port}/inbox/{inbox.id[:-1]}",
        other.url,
        f"http://127.0.0.1:{port}/mcp",
    ]
    async with Sender(timeout=2.0, own_urls=inboxes.owns) as sender:
        sent = await sender.send(inbox.url, {"content-type": "application/json"}, b"{}")
        assert sent.success and sent.status_code == 200, sent.error
        assert await sender.check_destination(inbox.url) is None
        for url in look_alikes:
            outcome = await sender.send(url, {}, b"{}")
            assert not outcome.success and outcome.error is not None, url
            assert "blocked" in outcome.error or "DNS" in outcome.error, (url, outcome.error)
            assert await sender.check_destination(url) is not None, url
    assert len(inbox.requests) == 1
