"""End-to-end delivery: a real Hub with its background dispatcher, real receivers on 127.0.0.1, and
real databases (the important rules run on both SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import standardwebhooks
from aiohttp import web
from sqlalchemy import func, select

from conftest import Received, Receiver, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.delivery.dispatcher import UNRECORDED_BATCHES
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import deliveries, delivery_attempts, events

pytestmark = pytest.mark.anyio

EVENT = "order.created"

ReceiverFactory = Callable[..., Awaitable[Receiver]]


def header(received: Received, name: str) -> str:
    lowered = {k.lower(): v for k, v in received.headers.items()}
    return lowered[name.lower()]


def data(hub: Hub, event_type: str = EVENT) -> dict[str, Any]:
    return dict(hub.catalog.get(event_type).example)


async def delivery_rows(hub: Hub, webhook_id: int | None = None) -> list[Any]:
    query = select(deliveries).order_by(deliveries.c.id)
    if webhook_id is not None:
        query = query.where(deliveries.c.webhook_id == webhook_id)
    return await hub.store.fetch_all(query)


async def states(hub: Hub, webhook_id: int) -> Counter[str]:
    return Counter(row.state for row in await delivery_rows(hub, webhook_id))


async def event_body(hub: Hub, event_id: str) -> str:
    return str(await hub.store.scalar(select(events.c.body).where(events.c.id == event_id)))


async def settled(hub: Hub, webhook_id: int, expected: dict[str, int]) -> bool:
    """True once the webhook's deliveries are in exactly these states and none is leased."""
    rows = await delivery_rows(hub, webhook_id)
    counts = Counter(row.state for row in rows)
    return dict(counts) == expected and all(row.lease_owner is None for row in rows)


async def gated_receiver(receiver_factory: ReceiverFactory, gate: asyncio.Event, status: int = 200) -> Receiver:
    async def respond(_received: Received, _n: int) -> web.Response:
        await gate.wait()
        return web.Response(status=status, text="ok")

    return await receiver_factory(responder=respond)


# --- happy path ---------------------------------------------------------------------------------


async def test_publish_delivers_once_signed(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        secret = (await hub.service.get_secret(hook.id)).secret
        published = await hub.publish(EVENT, data(hub))
        assert published.queued == 1 and not published.duplicate

        (got,) = await receiver.wait_for(1, timeout=5)
        assert await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}), timeout=5)

        payload = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
        assert header(got, "webhook-id") == published.event_id
        assert got.body.decode() == await event_body(hub, published.event_id)
        assert payload["id"] == published.event_id
        assert payload["type"] == EVENT
        assert payload["data"] == data(hub)
        assert header(got, "content-type") == "application/json"

        (row,) = await delivery_rows(hub, hook.id)
        assert row.event_id == published.event_id
        assert row.attempts == 1 and row.last_status == 200 and row.completed_at is not None

        logs = await hub.service.get_logs(hook.id)
        (attempt,) = logs.attempts
        assert attempt.attempt_number == 1
        assert attempt.success and attempt.status_code == 200
        assert attempt.delivery_id == row.id
        assert attempt.event_id == published.event_id
        assert attempt.event_type == EVENT
        assert not attempt.is_test

        stats = await hub.service.get_stats(hook.id)
        assert stats.succeeded_deliveries == 1
        assert stats.total_attempts == 1 and stats.succeeded == 1
        assert stats.pending_deliveries == stats.failed_deliveries == stats.held_deliveries == 0

        delivery = await hub.service.get_delivery(row.id)
        assert delivery.state == "succeeded"

        # Exactly once: nothing else arrives.
        with anyio.move_on_after(0.3):
            await receiver.wait_for(2)
        assert len(receiver.requests) == 1


async def test_only_subscribed_webhooks_receive(receiver_factory: ReceiverFactory, database_url: str) -> None:
    a = await receiver_factory()
    b = await receiver_factory()
    async with Hub.open(make_settings(database_url)) as hub:
        hook_a = await hub.service.create_webhook(a.url, [EVENT])
        hook_b = await hub.service.create_webhook(b.url, ["order.updated"])
        created = await hub.publish(EVENT, data(hub))
        updated = await hub.publish("order.updated", data(hub, "order.updated"))
        assert created.queued == updated.queued == 1
        await a.wait_for(1, timeout=5)
        await b.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook_a.id, {"succeeded": 1}))
        await wait_until(lambda: settled(hub, hook_b.id, {"succeeded": 1}))
        assert [header(r, "webhook-id") for r in a.requests] == [created.event_id]
        assert [header(r, "webhook-id") for r in b.requests] == [updated.event_id]


# --- retries --------------------------------------------------------------------------------------


async def test_retries_until_success(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[500, 500, 200])
    async with Hub.open(make_settings(database_url, retry_schedule=(0, 0.05, 0.05))) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        secret = (await hub.service.get_secret(hook.id)).secret
        published = await hub.publish(EVENT, data(hub))

        got = await receiver.wait_for(3, timeout=10)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}))
        assert len(got) == 3
        assert {header(r, "webhook-id") for r in got} == {published.event_id}
        assert len({r.body for r in got}) == 1, "every retry must send byte-identical bodies"
        for request in got:
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)

        logs = await hub.service.get_logs(hook.id)
        assert [a.attempt_number for a in logs.attempts] == [3, 2, 1]
        assert [a.success for a in logs.attempts] == [True, False, False]
        assert [a.status_code for a in logs.attempts] == [200, 500, 500]
        assert {a.event_id for a in logs.attempts} == {published.event_id}
        assert len({a.delivery_id for a in logs.attempts}) == 1
        (row,) = await delivery_rows(hub, hook.id)
        assert row.attempts == 3 and row.state == "succeeded"
        assert (await hub.service.get_delivery(row.id)).state == "succeeded"

        stats = await hub.service.get_stats(hook.id)
        assert stats.total_attempts == 3 and stats.succeeded == 1 and stats.failed == 2
        assert stats.succeeded_deliveries == 1 and stats.failed_deliveries == 0
        hook_now = await hub.service.get_webhook(hook.id)
        assert hook_now.enabled and hook_now.consecutive_failures == 0


async def test_response_with_nul_and_quotes_is_logged(receiver_factory: ReceiverFactory, database_url: str) -> None:
    """PostgreSQL text cannot hold NUL; a receiver's answer can. The attempt is still recorded."""

    def respond(_received: Received, _n: int) -> web.Response:
        return web.Response(status=500, body=b'bad\x00 "quoted" \\ {json} \xe2\x9c\x93', content_type="text/plain")

    receiver = await receiver_factory(responder=respond)
    async with Hub.open(make_settings(database_url, retry_schedule=(0, 3600))) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=10)
        await wait_until(lambda: _logged(hub, hook.id))
        (attempt,) = (await hub.service.get_logs(hook.id)).attempts
        assert attempt.status_code == 500 and not attempt.success
        assert attempt.response_excerpt == 'bad\ufffd "quoted" \\ {json} \u2713'
        (row,) = await delivery_rows(hub, hook.id)
        assert row.state == "pending" and row.lease_owner is None and row.last_status == 500


async def _logged(hub: Hub, webhook_id: int) -> bool:
    return bool((await hub.service.get_logs(webhook_id)).attempts)


async def test_exhausted_attempts_then_retry_and_replay(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[500])
    async with Hub.open(make_settings(database_url, retry_schedule=(0, 0.05, 0.05))) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        first = await hub.publish(EVENT, data(hub))
        await receiver.wait_for(3, timeout=10)
        await wait_until(lambda: settled(hub, hook.id, {"failed": 1}))
        (row,) = await delivery_rows(hub, hook.id)
        assert row.attempts == 3 and row.last_status == 500 and row.completed_at is not None

        stats = await hub.service.get_stats(hook.id)
        assert stats.failed_deliveries == 1 and stats.pending_deliveries == 0
        assert stats.total_attempts == 3 and stats.succeeded == 0
        assert (await hub.service.get_delivery(row.id)).state == "failed"
        assert [a.attempt_number for a in (await hub.service.get_logs(hook.id)).attempts] == [3, 2, 1]
        # Dead means dead: no 4th attempt on its own.
        with anyio.move_on_after(0.3):
            await receiver.wait_for(4)
        assert len(receiver.requests) == 3

        # retry_delivery revives it with a fresh budget.
        receiver.statuses = [200]
        revived = await hub.service.retry_delivery(row.id)
        assert revived.state == "pending"
        await receiver.wait_for(4, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}))
        assert header(receiver.requests[3], "webhook-id") == first.event_id
        assert (await hub.service.get_stats(hook.id)).succeeded_deliveries == 1

        # replay_failed revives every dead delivery of the webhook.
        receiver.statuses = [500]
        base = len(receiver.requests)
        second = await hub.publish(EVENT, data(hub))
        third = await hub.publish(EVENT, data(hub))
        await receiver.wait_for(base + 6, timeout=10)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1, "failed": 2}))
        assert (await hub.service.get_stats(hook.id)).failed_deliveries == 2

        receiver.statuses = [200]
        replay = await hub.service.replay_failed(hook.id)
        assert replay.requeued == 2 and not replay.held
        await receiver.wait_for(base + 8, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 3}))
        ids = Counter(header(r, "webhook-id") for r in receiver.requests[base + 6 :])
        assert ids == Counter({second.event_id: 1, third.event_id: 1})
        stats = await hub.service.get_stats(hook.id)
        assert stats.succeeded_deliveries == 3 and stats.failed_deliveries == 0


async def test_retry_after_is_honoured(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[429], headers={"Retry-After": "3"})
    async with Hub.open(make_settings(database_url, retry_schedule=(0, 0.05, 0.05))) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"pending": 1}))
        (row,) = await delivery_rows(hub, hook.id)
        stored = await hub.store.get_delivery(row.id)
        assert stored is not None
        (attempt,) = (await hub.service.get_logs(hook.id)).attempts
        assert attempt.status_code == 429
        attempted_at = attempt.timestamp.timestamp()
        assert stored.attempts == 1 and stored.last_status == 429
        assert stored.next_attempt_at == pytest.approx(attempted_at + 3.0, abs=0.5)
        assert stored.next_attempt_at > time.time() + 1.0, "the tiny schedule (0.05 s) must not be used"
        assert len(receiver.requests) == 1


async def test_retry_after_is_capped_by_max_retry_after(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[503], headers={"Retry-After": "86400"})
    settings = make_settings(database_url, retry_schedule=(0, 0.05, 0.05), max_retry_after=2.0)
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"pending": 1}))
        (row,) = await delivery_rows(hub, hook.id)
        (attempt,) = (await hub.service.get_logs(hook.id)).attempts
        assert row.next_attempt_at == pytest.approx(attempt.timestamp.timestamp() + 2.0, abs=0.5)


# --- disabling ----------------------------------------------------------------------------------


async def test_410_gone_disables_and_holds(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[410])
    settings = make_settings(database_url, max_concurrency=1, per_endpoint_concurrency=1, batch_size=1)
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        published = [p.event_id for p in await hub.service.publish_many([(EVENT, data(hub), None)] * 5)]

        await receiver.wait_for(1, timeout=5)
        disabled = await wait_until(
            lambda: _disabled(hub, hook.id),
            timeout=5,
        )
        assert "410" in (disabled.disabled_reason or "")
        assert disabled.disabled_at is not None
        # Everything not yet delivered waits (held); nothing is pending or dead.
        await wait_until(lambda: _none_leased_or_pending(hub, hook.id))
        counts = await states(hub, hook.id)
        assert counts["held"] == 5 and sum(counts.values()) == 5
        stats = await hub.service.get_stats(hook.id)
        assert stats.held_deliveries == 5 and stats.pending_deliveries == 0 and stats.failed_deliveries == 0
        listed = {h.id: h for h in (await hub.service.list_webhooks()).webhooks}
        assert not listed[hook.id].enabled and "410" in (listed[hook.id].disabled_reason or "")

        # Nothing more is sent while disabled, and new events are not queued for it.
        sent = len(receiver.requests)
        later = await hub.publish(EVENT, data(hub))
        assert later.queued == 0
        with anyio.move_on_after(0.3):
            await receiver.wait_for(sent + 1)
        assert len(receiver.requests) == sent

        # Re-enabled, the held deliveries go out.
        receiver.statuses = [200]
        enabled = await hub.service.set_enabled(hook.id, True)
        assert enabled.enabled and enabled.disabled_reason is None
        await receiver.wait_for(sent + 5, timeout=10)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 5}))
        delivered = Counter(header(r, "webhook-id") for r in receiver.requests[sent:])
        assert delivered == Counter(published)


async def _disabled(hub: Hub, webhook_id: int) -> Any:
    hook = await hub.service.get_webhook(webhook_id)
    return None if hook.enabled else hook


async def _none_leased_or_pending(hub: Hub, webhook_id: int) -> bool:
    rows = await delivery_rows(hub, webhook_id)
    return (
        all(row.state != "pending" and row.lease_owner is None for row in rows)
        and hub.dispatcher is not None
        and (hub.dispatcher.in_flight == 0)
    )


async def test_disabled_webhook_gets_nothing_queued(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        disabled = await hub.service.set_enabled(hook.id, False, "maintenance")
        assert not disabled.enabled and disabled.disabled_reason == "maintenance"
        published = await hub.publish(EVENT, data(hub))
        assert published.queued == 0
        assert await delivery_rows(hub, hook.id) == []
        toggled = await hub.service.toggle_webhook(hook.id)
        assert toggled.enabled
        # Events from while it was disabled are not delivered later either.
        after = await hub.publish(EVENT, data(hub))
        assert after.queued == 1
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}))
        assert [header(r, "webhook-id") for r in receiver.requests] == [after.event_id]


async def test_pending_deliveries_held_while_disabled(receiver_factory: ReceiverFactory, database_url: str) -> None:
    gate = asyncio.Event()
    receiver = await gated_receiver(receiver_factory, gate)
    settings = make_settings(database_url, max_concurrency=1, per_endpoint_concurrency=1, batch_size=1)
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        published = [p.event_id for p in await hub.service.publish_many([(EVENT, data(hub), None)] * 5)]
        await receiver.wait_for(1, timeout=5)  # one in flight, four pending

        await hub.service.toggle_webhook(hook.id)
        gate.set()
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1, "held": 4}))
        stats = await hub.service.get_stats(hook.id)
        assert stats.held_deliveries == 4 and stats.pending_deliveries == 0
        with anyio.move_on_after(0.3):
            await receiver.wait_for(2)
        assert len(receiver.requests) == 1

        await hub.service.set_enabled(hook.id, True)
        await receiver.wait_for(5, timeout=10)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 5}))
        assert Counter(header(r, "webhook-id") for r in receiver.requests) == Counter(published)


async def test_quick_disable_enable_does_not_resend_in_flight(
    receiver_factory: ReceiverFactory, database_url: str
) -> None:
    gate = asyncio.Event()
    receiver = await gated_receiver(receiver_factory, gate)
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=5)
        await hub.service.set_enabled(hook.id, False)
        await hub.service.set_enabled(hook.id, True)
        with anyio.move_on_after(0.5):
            await receiver.wait_for(2)
        gate.set()
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}))
        assert len(receiver.requests) == 1


async def test_auto_disable_after_failing_period(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[500])
    settings = make_settings(
        database_url,
        retry_schedule=(0,) + (0.05,) * 9,
        auto_disable_after=0.2,
        auto_disable_min_failures=3,
    )
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        healthy = await hub.service.create_webhook(receiver.url + "/other", ["order.updated"])
        await hub.publish(EVENT, data(hub))
        await hub.publish(EVENT, data(hub))

        disabled = await wait_until(lambda: _disabled(hub, hook.id), timeout=10)
        reason = disabled.disabled_reason or ""
        assert "auto-disabled" in reason
        assert disabled.consecutive_failures >= 3
        listed = {h.id: h for h in (await hub.service.list_webhooks()).webhooks}
        assert not listed[hook.id].enabled and "auto-disabled" in (listed[hook.id].disabled_reason or "")
        assert listed[healthy.id].enabled and listed[healthy.id].disabled_reason is None

        # Its unfinished deliveries wait instead of burning their attempts.
        await wait_until(lambda: _none_leased_or_pending(hub, hook.id))
        counts = await states(hub, hook.id)
        assert counts["pending"] == 0 and counts["held"] + counts["failed"] == 2
        assert counts["held"] >= 1


async def test_auto_disable_needs_min_failures(receiver_factory: ReceiverFactory, database_url: str) -> None:
    receiver = await receiver_factory(statuses=[500])
    settings = make_settings(
        database_url, retry_schedule=(0, 0.05, 0.05), auto_disable_after=0.01, auto_disable_min_failures=10
    )
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(3, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"failed": 1}))
        current = await hub.service.get_webhook(hook.id)
        assert current.enabled and current.consecutive_failures == 3


async def test_webhook_deleted_while_its_delivery_is_in_flight(
    receiver_factory: ReceiverFactory, receiver: Receiver, database_url: str
) -> None:
    """The late result of a deleted webhook is dropped; it must not block the other webhooks' results."""
    hanging = await receiver_factory(hang=True)
    async with Hub.open(make_settings(database_url)) as hub:
        doomed = await hub.service.create_webhook(hanging.url, [EVENT])
        other = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await hanging.wait_for(1, timeout=10)
        await receiver.wait_for(1, timeout=10)
        await hub.service.delete_webhook(doomed.id)
        hanging.release.set()
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(2, timeout=10)
        await wait_until(lambda: settled(hub, other.id, {"succeeded": 2}))
        assert await hub.store.scalar(select(func.count()).where(delivery_attempts.c.webhook_id == doomed.id)) == 0
        assert len((await hub.service.get_logs(other.id)).attempts) == 2


async def test_changing_a_webhook_hands_back_what_was_queued_for_it(receiver: Receiver, database_url: str) -> None:
    """Claimed but unsent deliveries would go out as the webhook was (old URL or secret, or
    disabled): a change in this process gives them back to the database at once."""
    from webhook_mcp.delivery.dispatcher import Dispatcher

    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        other = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, data(hub), None)] * 3)
        dispatcher = Dispatcher(hub.store, hub.sender, hub.settings)
        dispatcher._enqueue(await hub.store.claim(dispatcher.worker_id, 10, time.time(), 60), time.time() + 60)
        hub.service._on_change = dispatcher.forget_queued

        await hub.service.update_webhook(hook.id, description="moved")
        rows = await delivery_rows(hub)
        assert {(r.webhook_id, r.lease_owner is None, r.attempts) for r in rows} == {
            (hook.id, True, 0),
            (other.id, False, 1),
        }
        await hub.service.delete_webhook(other.id)
        assert dispatcher._queued_total == 0 and not dispatcher._held
        assert receiver.requests == []


# --- idempotency ------------------------------------------------------------------------------------


async def test_idempotency_key_publishes_once(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        first = await hub.publish(EVENT, data(hub), idempotency_key="order-1001-created")
        second = await hub.publish(EVENT, data(hub), idempotency_key="order-1001-created")
        assert not first.duplicate and first.queued == 1
        assert second.duplicate
        assert second.event_id == first.event_id
        # Nothing new was queued: still the one delivery of the first event.
        rows = await delivery_rows(hub, hook.id)
        assert [row.event_id for row in rows] == [first.event_id]

        other = await hub.publish(EVENT, data(hub), idempotency_key="order-1002-created")
        assert not other.duplicate and other.event_id != first.event_id

        await receiver.wait_for(2, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 2}))
        with anyio.move_on_after(0.3):
            await receiver.wait_for(3)
        assert Counter(header(r, "webhook-id") for r in receiver.requests) == Counter(
            {first.event_id: 1, other.event_id: 1}
        )


async def test_idempotency_key_within_one_batch(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        a, b = await hub.service.publish_many([(EVENT, data(hub), "k"), (EVENT, data(hub), "k")])
        assert a.event_id == b.event_id and not a.duplicate and b.duplicate
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}))
        assert len(receiver.requests) == 1


async def test_concurrent_idempotent_publishes_postgres(receiver: Receiver, postgres_url: str) -> None:
    async with Hub.open(make_settings(postgres_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        results = await asyncio.gather(
            *(hub.publish(EVENT, data(hub), idempotency_key="same-key") for _ in range(8)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert len({r.event_id for r in results}) == 1  # type: ignore[union-attr]
        assert sum(not r.duplicate for r in results) == 1  # type: ignore[union-attr]


async def test_concurrent_idempotent_publishes_sqlite(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        await hub.service.create_webhook(receiver.url, [EVENT])
        results = await asyncio.gather(*(hub.publish(EVENT, data(hub), idempotency_key="same-key") for _ in range(8)))
        assert len({r.event_id for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1


# --- scheduling and fairness ------------------------------------------------------------------


async def test_publish_wakes_dispatcher(receiver: Receiver, database_url: str) -> None:
    async with Hub.open(make_settings(database_url, poll_interval=30.0)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        first = await hub.publish(EVENT, data(hub))
        (got,) = await receiver.wait_for(1, timeout=2)
        assert header(got, "webhook-id") == first.event_id
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}), timeout=2)
        # Now the dispatcher has nothing due and sits in its 30 s poll wait: only the wake gets it going.
        for n in range(2, 5):
            start = time.monotonic()
            published = await hub.publish(EVENT, data(hub))
            await receiver.wait_for(n, timeout=2)
            assert time.monotonic() - start < 2
            assert header(receiver.requests[-1], "webhook-id") == published.event_id
            await wait_until(lambda n=n: settled(hub, hook.id, {"succeeded": n}), timeout=2)


async def test_the_last_send_in_flight_writes_its_result_at_once(
    receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing else in flight, waiting for more results would add nothing to the batch and
    keep a claim's worth of slots taken (a tenant at its cap would wait for them): the results
    are written at once, not after the flush interval."""
    monkeypatch.setattr("webhook_mcp.delivery.result_writer.FLUSH_INTERVAL", 60.0)
    # A claim's worth: a quarter of 8.
    async with Hub.open(make_settings(database_url, batch_size=8, max_concurrency=8)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish_many([{"type": EVENT, "data": data(hub)}] * 2)
        await receiver.wait_for(2, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 2}), timeout=5)


async def test_slow_endpoint_does_not_block_healthy_one(receiver_factory: ReceiverFactory, database_url: str) -> None:
    slow = await receiver_factory(hang=True)
    fast = await receiver_factory()
    settings = make_settings(database_url, max_concurrency=8, per_endpoint_concurrency=4, delivery_timeout=5.0)
    async with Hub.open(settings) as hub:
        try:
            slow_hook = await hub.service.create_webhook(slow.url, [EVENT])
            fast_hook = await hub.service.create_webhook(fast.url, [EVENT])
            start = time.monotonic()
            published = await hub.service.publish_many([(EVENT, data(hub), None)] * 40)
            assert all(p.queued == 2 for p in published)

            await fast.wait_for(40, timeout=3)
            elapsed = time.monotonic() - start
            assert elapsed < 3
            assert not slow.release.is_set(), "the slow endpoint must still be hanging"
            assert Counter(header(r, "webhook-id") for r in fast.requests) == Counter(p.event_id for p in published)
            await wait_until(lambda: settled(hub, fast_hook.id, {"succeeded": 40}), timeout=3)
            # The slow endpoint never had more than its share in flight.
            assert len(slow.requests) <= 4
            assert (await states(hub, slow_hook.id))["succeeded"] == 0
        finally:
            slow.release.set()


async def test_per_endpoint_concurrency_limit(receiver_factory: ReceiverFactory, database_url: str) -> None:
    gate = asyncio.Event()
    receiver = await gated_receiver(receiver_factory, gate)
    settings = make_settings(database_url, max_concurrency=8, per_endpoint_concurrency=3, delivery_timeout=5.0)
    async with Hub.open(settings) as hub:
        try:
            hook = await hub.service.create_webhook(receiver.url, [EVENT])
            await hub.service.publish_many([(EVENT, data(hub), None)] * 10)
            await receiver.wait_for(3, timeout=5)
            with anyio.move_on_after(0.3):
                await receiver.wait_for(4)
            assert len(receiver.requests) == 3
        finally:
            gate.set()
        await receiver.wait_for(10, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 10}))
        assert len(receiver.requests) == 10
        assert all(row.attempts == 1 for row in await delivery_rows(hub, hook.id))


async def test_two_dispatchers_deliver_exactly_once(receiver_factory: ReceiverFactory, database_url: str) -> None:
    # Six endpoints with room for 12 in flight, and each dispatcher sends at most 4 at a time: both must take work.
    settings = make_settings(
        database_url, batch_size=20, max_concurrency=4, per_endpoint_concurrency=2, lease_seconds=8, delivery_timeout=2
    )
    receivers = [await receiver_factory() for _ in range(6)]
    async with Hub.open(settings) as one, Hub.open(settings) as two:
        hooks = [await one.service.create_webhook(r.url, [EVENT]) for r in receivers]
        ids: list[str] = []
        for chunk in range(3):
            target = one if chunk % 2 == 0 else two
            published = await target.service.publish_many([(EVENT, data(target), None)] * 50)
            ids.extend(p.event_id for p in published)
        for r in receivers:
            await r.wait_for(150, timeout=30)
        for hook in hooks:
            await wait_until(lambda hook=hook: settled(one, hook.id, {"succeeded": 150}), timeout=10)
        with anyio.move_on_after(0.3):
            await receivers[0].wait_for(151)
        for r in receivers:
            counts = Counter(header(q, "webhook-id") for q in r.requests)
            assert set(counts) == set(ids)
            assert [i for i, n in counts.items() if n > 1] == []
        assert one.dispatcher is not None and two.dispatcher is not None
        assert one.dispatcher.delivered + two.dispatcher.delivered == 900
        assert one.dispatcher.delivered > 0 and two.dispatcher.delivered > 0, "both dispatchers should take work"


# --- upkeep and shutdown ----------------------------------------------------------------------------


async def test_prune_attempts_deletes_old_rows_in_batches(database_url: str, receiver: Receiver) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        now = time.time()

        def record(created_at: float, n: int) -> AttemptRecord:
            return AttemptRecord(
                delivery_id=None,
                webhook_id=hook.id,
                event_id=f"evt_{n}",
                event_type=EVENT,
                attempt_number=1,
                is_test=True,
                created_at=created_at,
                status_code=200,
                response_ms=1.0,
                success=True,
                error=None,
                response_excerpt="",
            )

        old = [record(now - 40 * 86400 - n, n) for n in range(7)]
        fresh = [record(now - n, 100 + n) for n in range(3)]
        await hub.store.record_attempts(old + fresh, now)
        cutoff = now - 30 * 86400

        removed = []
        for _ in range(10):
            n = await hub.store.prune_attempts(cutoff, 3)
            removed.append(n)
            if n == 0:
                break
        assert removed == [3, 3, 1, 0]

        left = sorted(row.event_id for row in await hub.store.fetch_all(select(delivery_attempts.c.event_id)))
        total = await hub.store.scalar(select(func.count()).select_from(delivery_attempts))
        assert total == 3
        assert left == sorted(f"evt_{100 + n}" for n in range(3))
        # Stats come from the hourly rollups: pruning the log does not rewrite history.
        stats = await hub.service.get_stats(hook.id)
        assert (stats.total_attempts, stats.test_attempts) == (10, 10)


async def test_graceful_stop_records_in_flight_results(receiver_factory: ReceiverFactory, database_url: str) -> None:
    gate = asyncio.Event()
    receiver = await gated_receiver(receiver_factory, gate)
    settings = make_settings(database_url, delivery_timeout=5.0, lease_seconds=300.0)
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        published = await hub.service.publish_many([(EVENT, data(hub), None)] * 5)
        await receiver.wait_for(5, timeout=5)
        assert hub.dispatcher is not None and hub.dispatcher.in_flight == 5

        async def release_soon() -> None:
            # Let the hub start closing with all five still in flight, then let them finish.
            await wait_until(lambda: hub.dispatcher is not None and hub.dispatcher._stopping, timeout=5)
            gate.set()

        releaser = asyncio.create_task(release_soon())
    with anyio.fail_after(5):
        await releaser

    async with Hub.open(settings, dispatch=False) as after:
        rows = await delivery_rows(after, hook.id)
        assert {row.event_id for row in rows} == {p.event_id for p in published}
        assert [row.state for row in rows] == ["succeeded"] * 5
        assert all(row.lease_owner is None for row in rows)
        logs = await after.service.get_logs(hook.id)
        assert len(logs.attempts) == 5 and all(a.success for a in logs.attempts)


async def test_graceful_stop_with_timeouts_leaves_nothing_leased(
    receiver_factory: ReceiverFactory, database_url: str
) -> None:
    hanging = await receiver_factory(hang=True)
    settings = make_settings(database_url, delivery_timeout=0.5, lease_seconds=300.0)
    try:
        async with Hub.open(settings) as hub:
            hook = await hub.service.create_webhook(hanging.url, [EVENT])
            await hub.service.publish_many([(EVENT, data(hub), None)] * 3)
            await hanging.wait_for(3, timeout=5)
        async with Hub.open(settings, dispatch=False) as after:
            rows = await delivery_rows(after, hook.id)
            assert len(rows) == 3
            # Each in-flight attempt timed out and was recorded: due for a retry, not leased for 300 s.
            assert all(row.lease_owner is None for row in rows)
            assert all(row.state == "pending" and row.attempts == 1 for row in rows)
            assert all(row.next_attempt_at < time.time() + 5 for row in rows)
            logs = await after.service.get_logs(hook.id)
            assert len(logs.attempts) == 3
            assert all(not a.success and "timed out" in (a.error or "") for a in logs.attempts)
    finally:
        hanging.release.set()


async def test_stops_when_cancelled_right_after_a_wake(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish just before shutdown: on Python 3.11 ``asyncio.wait_for`` swallowed a cancellation
    arriving in the same loop iteration as the wake-up, and the dispatcher never stopped."""
    from webhook_mcp import Dispatcher
    from webhook_mcp.storage.store import Store

    original = Store.claim
    claims = Counter[str]()

    async def counted(self: Store, *args: Any, **kwargs: Any) -> Any:
        claims["claim"] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "claim", counted)
    async with Hub.open(make_settings(database_url, poll_interval=60.0), dispatch=False) as hub:
        dispatcher = Dispatcher(hub.store, hub.sender, hub.settings)
        task = asyncio.create_task(dispatcher.run())
        try:
            await wait_until(lambda: claims["claim"] >= 1)  # now idle until woken or 60 s pass
            dispatcher.wake()
            task.cancel()
            with anyio.fail_after(5):
                await asyncio.wait({task})
            assert task.cancelled()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 5)


# --- database errors --------------------------------------------------------------------------------


def _db_error() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("UPDATE deliveries ...", {}, Exception("database is locked"))


async def test_claim_error_is_retried(receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook_mcp.storage.store import Store

    original = Store.claim
    calls = Counter[str]()

    async def flaky(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls["claim"] += 1
        if calls["claim"] == 1:
            raise _db_error()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "claim", flaky)
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        published = await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}), timeout=5)
        assert calls["claim"] >= 2
        assert [header(r, "webhook-id") for r in receiver.requests] == [published.event_id]


async def test_record_error_is_retried_without_resending(
    receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_mcp.storage.store import Store

    original = Store.record_attempts
    calls = Counter[str]()

    async def flaky(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls["record"] += 1
        if calls["record"] == 1:
            raise _db_error()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "record_attempts", flaky)
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.publish(EVENT, data(hub))
        await receiver.wait_for(1, timeout=5)
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 1}), timeout=5)
        assert calls["record"] >= 2
        assert len(receiver.requests) == 1
        assert len((await hub.service.get_logs(hook.id)).attempts) == 1


async def test_endpoint_limit_holds_across_dispatchers(receiver_factory: ReceiverFactory, database_url: str) -> None:
    """The per-endpoint limit is counted in the database: three dispatchers (as three workers on
    three machines would) never have more than the limit in flight to one endpoint together."""
    gate = asyncio.Event()
    in_flight = peak = 0

    async def respond(_received: Received, _n: int) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await gate.wait()
            return web.Response(text="ok")
        finally:
            in_flight -= 1

    receiver = await receiver_factory(responder=respond)
    settings = make_settings(database_url, max_concurrency=8, per_endpoint_concurrency=3, delivery_timeout=5.0)
    async with contextlib.AsyncExitStack() as stack:
        hubs = [await stack.enter_async_context(Hub.open(settings)) for _ in range(3)]
        hook = await hubs[0].service.create_webhook(receiver.url, [EVENT])
        await hubs[0].service.publish_many([(EVENT, data(hubs[0]), None)] * 30)
        await receiver.wait_for(3, timeout=5)
        with anyio.move_on_after(0.5):  # several polls of every dispatcher
            await receiver.wait_for(4)
        assert len(receiver.requests) == 3
        gate.set()
        await receiver.wait_for(30, timeout=10)
        await wait_until(lambda: settled(hubs[0], hook.id, {"succeeded": 30}), timeout=10)
    assert peak == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 30


async def test_endpoint_limit_holds_across_dispatchers_that_queue_ahead(
    receiver_factory: ReceiverFactory, database_url: str
) -> None:
    """Dispatchers lease up to twice what they may send to an endpoint and queue the rest
    behind their own sends; with leases changing hands all the time, the endpoint still never
    has more than its limit in flight."""
    limit = 3
    in_flight = peak = queued_ahead = 0
    hubs: list[Hub] = []

    async def respond(_received: Received, n: int) -> web.Response:
        nonlocal in_flight, peak, queued_ahead
        in_flight += 1
        peak = max(peak, in_flight)
        queued_ahead = max([queued_ahead] + [sum(h.dispatcher._held.values()) for h in hubs if h.dispatcher])
        try:
            await asyncio.sleep(0.001 * (n % 4))  # uneven response times
            return web.Response(text="ok")
        finally:
            in_flight -= 1

    receiver = await receiver_factory(responder=respond)
    settings = make_settings(
        database_url, max_concurrency=8, per_endpoint_concurrency=limit, lease_seconds=30, delivery_timeout=5.0
    )
    async with contextlib.AsyncExitStack() as stack:
        hubs += [await stack.enter_async_context(Hub.open(settings)) for _ in range(3)]
        hook = await hubs[0].service.create_webhook(receiver.url, [EVENT])
        published = await hubs[0].service.publish_many([(EVENT, data(hubs[0]), None)] * 200)
        await receiver.wait_for(200, timeout=30)
        await wait_until(lambda: settled(hubs[0], hook.id, {"succeeded": 200}), timeout=10)
    assert peak == limit
    assert queued_ahead > limit, "a dispatcher should have queued deliveries behind its sends"
    assert Counter(header(r, "webhook-id") for r in receiver.requests) == Counter(p.event_id for p in published)


async def test_queued_ahead_deliveries_wait_for_slots_other_workers_hold(
    receiver_factory: ReceiverFactory, database_url: str
) -> None:
    """Another worker sends two of the endpoint's three: this one leases one to send and one to
    queue behind it, and sends only the one."""
    gate = asyncio.Event()
    receiver = await gated_receiver(receiver_factory, gate)
    settings = make_settings(
        database_url, max_concurrency=8, per_endpoint_concurrency=3, lease_seconds=30, delivery_timeout=5.0
    )
    async with Hub.open(settings, dispatch=False) as other:
        hook = await other.service.create_webhook(receiver.url, [EVENT])
        await other.service.publish_many([(EVENT, data(other), None)] * 10)
        assert len(await other.store.claim("other worker", 2, time.time(), 30, 3)) == 2
        async with Hub.open(settings) as hub:
            try:
                assert hub.dispatcher is not None
                hub.dispatcher.wake()
                await receiver.wait_for(1, timeout=5)
                with anyio.move_on_after(0.3):  # several claims
                    await receiver.wait_for(2)
                assert len(receiver.requests) == 1
                assert dict(hub.dispatcher._held) == {hook.id: 2}
            finally:
                gate.set()
            await receiver.wait_for(8, timeout=10)


async def test_a_delivery_queued_past_its_lease_is_not_sent(receiver: Receiver, database_url: str) -> None:
    """A queued delivery whose lease would end before a send could finish is left to the lease:
    another worker may take it by then, and two sends must not overlap."""
    from webhook_mcp.delivery.dispatcher import Dispatcher

    settings = make_settings(database_url, lease_seconds=30, delivery_timeout=5.0)
    async with Hub.open(settings, dispatch=False) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, data(hub), None)] * 2)
        dispatcher = Dispatcher(hub.store, hub.sender, hub.settings)
        now = time.time()
        late, fresh = await hub.store.claim(dispatcher.worker_id, 10, now, 30)
        dispatcher._enqueue([late], now + 4.0)
        dispatcher._enqueue([fresh], now + 30)
        dispatcher._start_sends()
        assert (dispatcher.in_flight, dispatcher._queued_total, dispatcher._held[hook.id]) == (1, 0, 1)
        await asyncio.gather(*dispatcher._tasks.values())
        assert await dispatcher._flush()
        assert [header(r, "webhook-id") for r in receiver.requests] == [fresh.event_id]
        # Nobody sends it before its lease ends; then it comes due for whoever claims first.
        assert await hub.store.claim("other", 10, now + 29, 30) == []
        assert [d.id for d in await hub.store.claim("other", 10, now + 31, 30)] == [late.id]


async def test_a_queue_for_an_endpoint_others_fill_is_handed_back(receiver: Receiver, database_url: str) -> None:
    """When this worker sends nothing to an endpoint and its last claim found other workers
    holding every slot, what it queued for it goes back to the database instead of idling."""
    from webhook_mcp.delivery.dispatcher import Dispatcher

    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        await hub.service.publish_many([(EVENT, data(hub), None)] * 3)
        dispatcher = Dispatcher(hub.store, hub.sender, hub.settings)
        now = time.time()
        claimed = await hub.store.claim(dispatcher.worker_id, 10, now, 60)
        dispatcher._send_limit[hook.id] = 0
        dispatcher._enqueue(claimed, now + 60)
        dispatcher._start_sends()
        await asyncio.gather(*list(dispatcher._handing_back))
        assert {(r.lease_owner, r.attempts) for r in await delivery_rows(hub)} == {(None, 0)}
        assert dispatcher._queued_total == 0 and not dispatcher._held and dispatcher.in_flight == 0
        assert receiver.requests == []


async def test_unrecorded_results_limit_new_claims(
    receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_mcp.storage.store import Store

    original = Store.record_attempts
    writes_open = asyncio.Event()

    async def slow(self: Store, *args: Any, **kwargs: Any) -> Any:
        await writes_open.wait()  # e.g. a PostgreSQL row lock held by another worker's flush
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "record_attempts", slow)
    settings = make_settings(database_url, max_concurrency=4, per_endpoint_concurrency=4, batch_size=4)
    async with Hub.open(settings) as hub:
        try:
            hook = await hub.service.create_webhook(receiver.url, [EVENT])
            await hub.service.publish_many([(EVENT, data(hub), None)] * 40)
            await receiver.wait_for(4, timeout=5)
            # Sent but unrecorded is what a crash would send again; it must stay bounded:
            # max_concurrency + UNRECORDED_BATCHES * batch_size.
            bound = 4 + UNRECORDED_BATCHES * 4
            with anyio.move_on_after(1.0):
                await receiver.wait_for(bound + 1)
            assert len(receiver.requests) <= bound
        finally:
            writes_open.set()
        await wait_until(lambda: settled(hub, hook.id, {"succeeded": 40}), timeout=10)
