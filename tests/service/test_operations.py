"""The service's rules, against real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import Receiver, make_settings
from webhook_mcp import Hub, InvalidArgumentError, InvalidPayloadError, NotFoundError, UnknownEventTypeError
from webhook_mcp.storage.records import AttemptRecord

pytestmark = pytest.mark.anyio

URL = "https://shop-receiver.example.com/webhooks"


@pytest.fixture
async def db_hub(database_url: str) -> AsyncIterator[Hub]:
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        yield opened


def order() -> dict[str, Any]:
    from webhook_mcp.core.catalog import load_catalog

    return dict(load_catalog().get("order.created").example)


def attempt(webhook_id: int, *, success: bool, ms: float, at: float, is_test: bool = False) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=None,
        webhook_id=webhook_id,
        event_id="evt_x",
        event_type="order.created",
        attempt_number=1,
        is_test=is_test,
        created_at=at,
        status_code=200 if success else 500,
        response_ms=ms,
        success=success,
        error=None if success else "HTTP 500 Internal Server Error",
        response_excerpt="",
    )


async def test_create_get_list_round_trip(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(f"  {URL}  ", ["order.created", "payment.completed"], "ERP sync")
    assert created.id >= 1
    assert created.url == URL
    assert created.events == ["order.created", "payment.completed"]
    assert created.description == "ERP sync"
    assert created.enabled and created.disabled_reason is None
    fetched = await db_hub.service.get_webhook(created.id)
    assert fetched == created
    listed = await db_hub.service.list_webhooks()
    assert listed.total == 1 and listed.webhooks[0].id == created.id


async def test_secret_is_standard_webhooks_and_masked(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    secret = (await db_hub.service.get_secret(created.id)).secret
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created.secret_hint.endswith(secret[-4:])
    assert secret not in created.model_dump_json()
    other = await db_hub.service.create_webhook(URL, ["order.created"])
    assert (await db_hub.service.get_secret(other.id)).secret != secret


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "url is empty"),
        ("ftp://example.com/x", r"not an absolute http\(s\) URL"),
        ("/webhooks", r"not an absolute http\(s\) URL"),
        ("https://", r"not an absolute http\(s\) URL"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com:99999/", "Port out of range"),
        ("http://[::1/x", "malformed"),
        ("http://exa mple.com/x", "not a valid host name"),
        ("https://example.com/" + "a" * 2100, "the limit is 2048"),
    ],
)
async def test_bad_urls_are_refused_with_reasons(hub: Hub, url: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        await hub.service.create_webhook(url, ["order.created"])


async def test_bad_event_lists_are_refused(hub: Hub) -> None:
    with pytest.raises(InvalidArgumentError, match="events is empty"):
        await hub.service.create_webhook(URL, [])
    with pytest.raises(InvalidArgumentError, match=r"order\.created more than once"):
        await hub.service.create_webhook(URL, ["order.created", "order.created"])
    with pytest.raises(UnknownEventTypeError, match=r"order\.created") as info:
        await hub.service.create_webhook(URL, ["order.create"])
    assert "order.created" in info.value.suggestions
    with pytest.raises(InvalidArgumentError, match=r"webhook\.test"):
        await hub.service.create_webhook(URL, ["webhook.test"])
    with pytest.raises(InvalidArgumentError, match="the limit is 500"):
        await hub.service.create_webhook(URL, ["order.created"], "x" * 501)
    assert (await hub.service.list_webhooks()).total == 0


async def test_unknown_ids_name_the_next_step(hub: Hub) -> None:
    for call in (
        hub.service.get_webhook(42),
        hub.service.toggle_webhook(42),
        hub.service.delete_webhook(42),
        hub.service.get_secret(42),
        hub.service.get_logs(42),
        hub.service.get_stats(42),
        hub.service.test_webhook(42),
        hub.service.update_webhook(42, url=URL),
        hub.service.replay_failed(42),
    ):
        with pytest.raises(NotFoundError, match="no webhook with id 42; call list_webhooks"):
            await call
    with pytest.raises(NotFoundError, match="no delivery with id 7"):
        await hub.service.retry_delivery(7)


async def test_update_changes_only_what_is_given(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"], "first")
    secret = (await db_hub.service.get_secret(created.id)).secret
    updated = await db_hub.service.update_webhook(created.id, events=["order.created", "order.updated"])
    assert updated.events == ["order.created", "order.updated"]
    assert updated.url == URL and updated.description == "first"
    moved = await db_hub.service.update_webhook(created.id, url="https://new-server.com/webhooks", description="")
    assert moved.url == "https://new-server.com/webhooks" and moved.description == ""
    assert (await db_hub.service.get_secret(created.id)).secret == secret
    with pytest.raises(InvalidArgumentError, match="nothing to update"):
        await db_hub.service.update_webhook(created.id)
    with pytest.raises(InvalidArgumentError, match="not an absolute"):
        await db_hub.service.update_webhook(created.id, url="nope")


async def test_toggle_holds_and_resumes_waiting_deliveries(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    await db_hub.publish("order.created", order())
    assert (await db_hub.service.get_stats(created.id)).pending_deliveries == 1

    disabled = await db_hub.service.toggle_webhook(created.id)
    assert not disabled.enabled and disabled.disabled_reason == "disabled by request"
    stats = await db_hub.service.get_stats(created.id)
    assert (stats.pending_deliveries, stats.held_deliveries) == (0, 1)
    published = await db_hub.publish("order.created", order())
    assert published.queued == 0

    enabled = await db_hub.service.toggle_webhook(created.id)
    assert enabled.enabled and enabled.disabled_reason is None
    stats = await db_hub.service.get_stats(created.id)
    assert (stats.pending_deliveries, stats.held_deliveries) == (1, 0)


async def test_delete_removes_deliveries_and_logs(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    keep = await db_hub.service.create_webhook(URL, ["order.created"])
    await db_hub.publish("order.created", order())
    await db_hub.store.record_attempts([attempt(created.id, success=True, ms=5, at=time.time())], time.time())
    deleted = await db_hub.service.delete_webhook(created.id)
    assert deleted.deleted and deleted.removed_deliveries == 1 and deleted.removed_attempts == 1
    with pytest.raises(NotFoundError):
        await db_hub.service.get_webhook(created.id)
    assert (await db_hub.service.get_stats(keep.id)).pending_deliveries == 1


async def test_publish_queues_only_enabled_subscribers(db_hub: Hub) -> None:
    orders = await db_hub.service.create_webhook(URL, ["order.created"])
    both = await db_hub.service.create_webhook(URL, ["order.created", "payment.completed"])
    payments = await db_hub.service.create_webhook(URL, ["payment.completed"])
    off = await db_hub.service.create_webhook(URL, ["order.created"])
    await db_hub.service.toggle_webhook(off.id)

    published = await db_hub.publish("order.created", order())
    assert published.event_id.startswith("evt_") and published.queued == 2 and not published.duplicate
    pending = {h.id: (await db_hub.service.get_stats(h.id)).pending_deliveries for h in (orders, both, payments, off)}
    assert pending == {orders.id: 1, both.id: 1, payments.id: 0, off.id: 0}


async def test_publish_validates_against_the_schema(hub: Hub) -> None:
    data = order()
    del data["id"]
    data["line_items"] = "not a list"
    with pytest.raises(InvalidPayloadError) as info:
        await hub.publish("order.created", data)
    assert info.value.problems == ["data: 'id' is a required property"]
    assert "get_webhook_sample_payload" in str(info.value)
    with pytest.raises(UnknownEventTypeError):
        await hub.publish("order.exploded", {})
    with pytest.raises(InvalidArgumentError, match="cannot be subscribed"):
        await hub.publish("webhook.test", {"message": "hi"})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"extra": float("nan")}, "data.extra: NaN is not JSON; send a number or null"),
        ({"totals": {"tax": float("inf")}}, "data.totals.tax: Infinity is not JSON; send a number or null"),
        ({"lines": [{"qty": float("-inf")}]}, "data.lines[0].qty: -Infinity is not JSON"),
        ({"when": {1, 2}}, "data.when: a set is not JSON"),
    ],
)
async def test_publish_refuses_what_json_cannot_carry_and_stores_nothing(
    db_hub: Hub, bad: dict[str, Any], message: str
) -> None:
    """The Python API (and every door behind it) never stores or sends a body strict parsers refuse."""
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    for publish in (db_hub.publish, db_hub.service.publish):
        with pytest.raises(InvalidArgumentError) as info:
            await publish("order.created", {**order(), **bad})
        assert message in str(info.value)
    with pytest.raises(InvalidArgumentError, match=r"data\.extra: NaN"):
        await db_hub.service.publish_many(
            [("order.created", order(), None), ("order.created", {"extra": math.nan}, None)]
        )
    assert (await db_hub.service.get_stats(created.id)).pending_deliveries == 0


async def test_publish_refuses_oversized_bodies(database_url: str) -> None:
    async with Hub.open(make_settings(database_url, max_payload_bytes=2048), dispatch=False) as small:
        data = order()
        data["note"] = "x" * 4000
        with pytest.raises(InvalidArgumentError, match="the limit is 2048"):
            await small.publish("order.created", data)


async def test_idempotency_key_returns_the_first_event(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    first = await db_hub.publish("order.created", order(), idempotency_key="order-1001")
    again = await db_hub.publish("order.created", order(), idempotency_key="order-1001")
    assert again.event_id == first.event_id and again.duplicate and again.queued == 1
    other = await db_hub.publish("order.created", order(), idempotency_key="order-1002")
    assert other.event_id != first.event_id
    batch = await db_hub.service.publish_many(
        [("order.created", order(), "order-2000"), ("order.created", order(), "order-2000")]
    )
    assert batch[0].event_id == batch[1].event_id and batch[1].duplicate
    assert (await db_hub.service.get_stats(created.id)).pending_deliveries == 3


async def test_idempotency_key_expires_after_its_window(database_url: str) -> None:
    clock = [1_000_000.0]
    async with Hub.open(make_settings(database_url, idempotency_ttl=60), dispatch=False) as opened:
        opened.service._clock = lambda: clock[0]
        first = await opened.publish("order.created", order(), idempotency_key="k")
        clock[0] += 61
        later = await opened.publish("order.created", order(), idempotency_key="k")
        assert later.event_id != first.event_id and not later.duplicate
        clock[0] += 1
        assert (await opened.publish("order.created", order(), idempotency_key="k")).event_id == later.event_id


async def test_logs_page_newest_first_and_filter(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    now = time.time()
    records = [attempt(created.id, success=i % 3 != 0, ms=float(i), at=now + i, is_test=i == 4) for i in range(25)]
    await db_hub.store.record_attempts(records, now)

    first = await db_hub.service.get_logs(created.id)
    assert len(first.attempts) == 20 and first.next_cursor is not None
    assert [a.response_ms for a in first.attempts[:3]] == [24.0, 23.0, 22.0]
    second = await db_hub.service.get_logs(created.id, cursor=first.next_cursor)
    assert [a.response_ms for a in second.attempts] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert second.next_cursor is None

    failed = await db_hub.service.get_logs(created.id, limit=100, status="failed")
    assert {a.response_ms for a in failed.attempts} == {float(i) for i in range(25) if i % 3 == 0}
    assert all(not a.success and a.error for a in failed.attempts)
    tests = await db_hub.service.get_logs(created.id, status="test")
    assert [a.response_ms for a in tests.attempts] == [4.0]

    with pytest.raises(InvalidArgumentError, match="between 1 and 100"):
        await db_hub.service.get_logs(created.id, limit=101)
    with pytest.raises(InvalidArgumentError, match="between 1 and 100"):
        await db_hub.service.get_logs(created.id, limit=0)
    with pytest.raises(InvalidArgumentError, match="next_cursor"):
        await db_hub.service.get_logs(created.id, cursor="abc")
    with pytest.raises(InvalidArgumentError, match="status must be one of"):
        await db_hub.service.get_logs(created.id, status="weird")


async def test_stats_aggregate_and_window(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    empty = await db_hub.service.get_stats(created.id)
    assert empty.total_attempts == 0 and empty.success_rate is None and empty.p95_response_ms is None

    now = time.time()
    old = [attempt(created.id, success=True, ms=1000.0, at=now - 7200)]
    recent = [attempt(created.id, success=True, ms=float(ms), at=now - 100 + ms) for ms in range(1, 21)]
    failures = [attempt(created.id, success=False, ms=50.0, at=now - 10 + i) for i in range(3)]
    await db_hub.store.record_attempts(old + recent + failures, now)

    stats = await db_hub.service.get_stats(created.id)
    assert (stats.total_attempts, stats.succeeded, stats.failed) == (24, 21, 3)
    assert stats.success_rate == pytest.approx(87.5)
    assert stats.consecutive_failures == 3
    assert stats.p95_response_ms == 50.0
    assert stats.last_failure_at is not None and stats.last_success_at is not None
    assert stats.last_failure_at > stats.last_success_at

    window = await db_hub.service.get_stats(created.id, window_hours=1)
    assert (window.total_attempts, window.succeeded) == (23, 20)
    assert window.avg_response_ms == pytest.approx((sum(range(1, 21)) + 150) / 23, abs=0.1)
    with pytest.raises(InvalidArgumentError, match="window_hours"):
        await db_hub.service.get_stats(created.id, window_hours=-1)


async def test_test_webhook_records_a_test_attempt(hub: Hub, receiver: Receiver) -> None:
    created = await hub.service.create_webhook(receiver.url, ["order.created"])
    result = await hub.service.test_webhook(created.id)
    assert result.success and result.status_code == 200 and result.event == "webhook.test"
    (received,) = receiver.requests
    assert received.json["type"] == "webhook.test" and received.json["data"]["webhook_id"] == created.id
    assert received.headers["webhook-id"] == result.event_id
    logs = await hub.service.get_logs(created.id)
    assert logs.attempts[0].attempt_id == result.attempt_id and logs.attempts[0].is_test
    with pytest.raises(UnknownEventTypeError):
        await hub.service.test_webhook(created.id, "nope.nope")


async def test_retry_and_replay_revive_only_dead_deliveries(db_hub: Hub) -> None:
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    for _ in range(3):
        await db_hub.publish("order.created", order())
    claimed = await db_hub.store.claim("test", 10, time.time(), 30)
    assert len(claimed) == 3
    now = time.time()
    dead = [
        AttemptRecord(
            delivery_id=d.id,
            webhook_id=d.webhook_id,
            event_id=d.event_id,
            event_type=d.event_type,
            attempt_number=d.attempt_number,
            is_test=False,
            created_at=now,
            status_code=500,
            response_ms=3.0,
            success=False,
            error="HTTP 500",
            response_excerpt="",
            next_state="failed",
        )
        for d in claimed
    ]
    await db_hub.store.record_attempts(dead, now)
    assert (await db_hub.service.get_stats(created.id)).failed_deliveries == 3

    revived = await db_hub.service.retry_delivery(claimed[0].id)
    assert revived.state == "pending" and revived.attempts == 0
    with pytest.raises(InvalidArgumentError, match="only failed"):
        await db_hub.service.retry_delivery(claimed[0].id)

    await db_hub.service.toggle_webhook(created.id)
    replay = await db_hub.service.replay_failed(created.id)
    assert replay.requeued == 2 and replay.held
    stats = await db_hub.service.get_stats(created.id)
    assert (stats.failed_deliveries, stats.held_deliveries) == (0, 3)


async def test_claims_never_overlap_and_leases_expire(database_url: str) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        await opened.service.create_webhook(URL, ["order.created"])
        await opened.service.publish_many([("order.created", order(), None)] * 30)
        now = time.time()
        first = await opened.store.claim("a", 20, now, lease=60)
        second = await opened.store.claim("b", 20, now, lease=60)
        assert len(first) == 20 and len(second) == 10
        assert not {d.id for d in first} & {d.id for d in second}
        assert await opened.store.claim("c", 20, now, lease=60) == []
        after_lease = await opened.store.claim("c", 50, now + 61, lease=60)
        assert len(after_lease) == 30
        assert {d.attempt_number for d in after_lease} == {2}


async def test_claims_queue_ahead_only_behind_room_they_filled(database_url: str) -> None:
    """A worker may lease more of an endpoint than it may send, to queue behind its own sends:
    only from webhooks whose room it filled, no more than ``ahead_limit`` in all, and never more
    than it may send itself. Other workers count those leases as in flight."""
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        a = await opened.service.create_webhook(f"{URL}/a", ["order.created"])
        b = await opened.service.create_webhook(f"{URL}/b", ["order.created"])
        await opened.service.publish_many([("order.created", order(), None)] * 10)
        now = time.time()
        store = opened.store

        async def claim(
            owner: str, limit: int, own: dict[int, int], ahead_limit: int
        ) -> tuple[Counter[int], dict[int, int]]:
            others: dict[int, int] = {}
            claimed = await store.claim(
                owner, limit, now, 60, 3, in_flight=own, ahead=3, ahead_limit=ahead_limit, others=others
            )
            return Counter(d.webhook_id for d in claimed), others

        # Four to send: two of each webhook; neither webhook's room (3) is full, so none queued.
        taken, others = await claim("w", 4, {}, 10)
        assert taken == {a.id: 2, b.id: 2} and others == {a.id: 0, b.id: 0}
        # One more to send of each fills both: then two (the ahead limit) to queue, oldest first.
        taken, _ = await claim("w", 10, {a.id: 2, b.id: 2}, 2)
        assert taken == {a.id: 2, b.id: 2}
        # Another worker finds every slot counted as in flight.
        blocked: list[int] = []
        others = {}
        assert await store.claim("x", 10, now, 60, 3, ahead=3, ahead_limit=10, blocked=blocked, others=others) == []
        assert others == {a.id: 4, b.id: 4} and sorted(blocked) == sorted([a.id, b.id])
        # Up to twice what it may send, and no further.
        taken, _ = await claim("w", 10, {a.id: 4, b.id: 4}, 10)
        assert taken == {a.id: 2, b.id: 2}
        taken, _ = await claim("w", 10, {a.id: 6, b.id: 6}, 10)
        assert taken == {}

        # A worker that may send one (another holds two of three) queues at most one more.
        c = await opened.service.create_webhook(f"{URL}/c", ["order.created"])
        await opened.service.publish_many([("order.created", order(), None)] * 10)
        now = time.time()
        assert len(await store.claim("x", 2, now, 60, 3, in_flight={a.id: 6, b.id: 6})) == 2
        taken, others = await claim("y", 10, {}, 10)
        assert taken == {c.id: 2} and others[c.id] == 2


async def test_sample_payload_is_the_exact_envelope(hub: Hub) -> None:
    sample = hub.service.sample_payload("payment.completed")
    assert set(sample.body) == {"id", "type", "timestamp", "data"}
    assert sample.body["type"] == "payment.completed"
    assert sample.body["data"] == hub.catalog.get("payment.completed").example
    assert sample.headers["webhook-signature"].startswith("v1,")
    assert sample.data_schema is not None
    with pytest.raises(UnknownEventTypeError, match=r"payment\.completed"):
        hub.service.sample_payload("payment.complete")


async def test_event_type_list_excludes_the_test_event(hub: Hub) -> None:
    listed = hub.service.list_event_types()
    names = [t.name for t in listed.event_types]
    assert "webhook.test" not in names and "order.created" in names and listed.total == len(names) >= 15


async def test_concurrent_result_writers_lose_no_failure(db_hub: Hub) -> None:
    """Several workers record results for one webhook at once: its failure streak (which drives
    auto-disable) and its statistics count every attempt."""
    created = await db_hub.service.create_webhook(URL, ["order.created"])
    await db_hub.service.publish_many([("order.created", order(), None)] * 32)
    claimed = await db_hub.store.claim("w", 32, time.time(), lease=60)
    now = time.time()
    records = [
        dataclasses.replace(
            attempt(created.id, success=False, ms=1.0, at=now),
            delivery_id=d.id,
            event_id=d.event_id,
            next_state="pending",
            next_attempt_at=now + 60,
        )
        for d in claimed
    ]
    await asyncio.gather(*(db_hub.store.record_attempts([r], now) for r in records))
    assert (await db_hub.service.get_webhook(created.id)).consecutive_failures == 32
    stats = await db_hub.service.get_stats(created.id)
    assert (stats.total_attempts, stats.failed, stats.consecutive_failures) == (32, 32, 32)


async def test_concurrent_claimers_take_different_webhooks(postgres_url: str) -> None:
    """A claim keeps only the claim locks it needs: while one worker is claiming from the oldest
    webhook, another takes the next webhooks at once instead of finding every one locked."""
    from webhook_mcp.storage.pipeline import HotTransaction
    from webhook_mcp.storage.sql.postgresql import POSTGRES

    async with Hub.open(make_settings(postgres_url), dispatch=False) as opened:
        hooks = [await opened.service.create_webhook(f"{URL}/{n}", ["order.created"]) for n in range(4)]
        await opened.service.publish_many([("order.created", order(), None)] * 10)
        now = time.time()
        scanned, go = threading.Event(), threading.Event()

        def first_claimer(tx: HotTransaction) -> list[tuple[Any, ...]]:
            params = {"now": now, "window": 100, "per_hook": 10, "lock": True, "enough": 10, "owner": "a"}
            params |= {"own_ids": "{}", "own_n": "{}", "cap": 64, "ahead": 0, "tcap": None, "deeper": True}
            tx.send(POSTGRES.scan, params)
            # The webhooks whose rows the scan handed on, their claim locks kept.
            rows = tx.fetch("SELECT unnest(current_setting('webhook_mcp.claim_hooks')::integer[])", {})
            tx.after_commit(POSTGRES.unlock or "")
            scanned.set()
            go.wait(10)
            return rows

        holding = asyncio.get_running_loop().run_in_executor(None, opened.store._pipelined.run, first_claimer)  # type: ignore[union-attr]
        await asyncio.to_thread(scanned.wait, 10)
        blocked: list[int] = []
        try:
            second = await opened.store.claim("b", 30, now, 60, per_endpoint=64, blocked=blocked)
        finally:
            go.set()
        rows = await holding
        mine = {hook_id for (hook_id,) in rows}
        assert len(mine) == 1  # ten rows were enough: one webhook's lock kept, the others let go
        assert {d.webhook_id for d in second} == {h.id for h in hooks} - mine
        assert len(second) == 30 and blocked == list(mine)
        # The first claimer let its lock go with its commit: its webhook can be claimed now.
        assert len(await opened.store.claim("c", 30, now, 60, per_endpoint=64)) == 10
