"""What the dashboard reads: health over 24 hours, hourly series, the filtered log and its pages,
and an attempt's request rebuilt as it was sent, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, select

from conftest import Receiver, make_settings, wait_until
from dashboard_seed import Outcome, attempts, publish_at
from webhook_mcp import Hub, InvalidArgumentError, NotFoundError
from webhook_mcp.service.dashboard import DashboardService, LogEntry, parse_filter
from webhook_mcp.storage.dashboard import AttemptFilter
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import deliveries, events

pytestmark = pytest.mark.anyio

URL = "https://receiver.example.com/hooks"


@pytest.fixture
async def db_hub(database_url: str) -> AsyncIterator[Hub]:
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        yield opened


def logged(
    webhook_id: int, at: float, status: int | None, ms: float, event_type: str = "order.created"
) -> AttemptRecord:
    return AttemptRecord.of(
        Outcome(status, ms, None if status else "connection refused"),
        delivery_id=None,
        webhook_id=webhook_id,
        event_id="evt_seeded",
        event_type=event_type,
        attempt_number=1,
        created_at=at,
    )


async def test_health_counts_the_last_day_and_what_waits(db_hub: Hub) -> None:
    now = time.time()
    shop = await db_hub.service.create_webhook(URL, ["order.created"])
    quiet = await db_hub.service.create_webhook(URL + "/quiet", ["order.paid"])
    latencies = [float(ms) for ms in range(10, 210, 10)]  # 20 attempts, 19 succeed
    records = [logged(shop.id, now - 3600 - i, 200 if i else 500, ms) for i, ms in enumerate(latencies)]
    records.append(logged(shop.id, now - 3 * 86400, 500, 9000.0))  # outside the window
    await db_hub.store.record_attempts(records, now)
    queued = await publish_at(db_hub, now - 60, "order.created", 3)
    dead = attempts(queued[:2], now - 30, Outcome(None, 5.0, "timed out"), "order.created", final=True)
    await db_hub.store.record_attempts(dead, now)
    await db_hub.service.set_enabled(quiet.id, False)

    health = {row.webhook.id: row for row in await DashboardService(db_hub.service).health()}
    row = health[shop.id]
    assert row.state == "enabled" and row.attempts == 22  # 20 tests + 2 real failures, not the old one
    assert row.success_rate == pytest.approx(100 * 19 / 22)
    ordered = sorted([*latencies, 5.0, 5.0])
    assert row.p95_ms == ordered[math.ceil(0.95 * 22) - 1]  # nearest rank, exact below 10,000
    assert (row.pending, row.held, row.dead) == (1, 0, 2)
    assert health[quiet.id].state == "disabled" and health[quiet.id].attempts == 0
    assert health[quiet.id].success_rate is None and health[quiet.id].p95_ms is None


async def test_a_webhook_the_service_disabled_is_auto_disabled(db_hub: Hub) -> None:
    hook = await db_hub.service.create_webhook(URL, ["order.created"])
    queued = await publish_at(db_hub, time.time(), "order.created", 1)
    (gone,) = attempts(queued, time.time(), Outcome(410, 12.0), "order.created", final=True)
    gone = AttemptRecord.of(
        Outcome(410, 12.0),
        delivery_id=gone.delivery_id,
        webhook_id=hook.id,
        event_id=gone.event_id,
        event_type="order.created",
        attempt_number=1,
        created_at=gone.created_at,
        next_state="failed",
        disable_reason=f"disabled: the endpoint {URL} answered 410 Gone; update the URL or re-enable",
    )
    await db_hub.store.record_attempts([gone], time.time())
    (row,) = await DashboardService(db_hub.service).health()
    assert row.state == "auto-disabled" and row.dead == 1 and "410 Gone" in (row.webhook.disabled_reason or "")


async def test_hourly_series_has_every_hour_of_the_week(db_hub: Hub) -> None:
    now = time.time()
    hook = await db_hub.service.create_webhook(URL, ["order.created"])
    this_hour = now // 3600 * 3600
    records = [
        logged(hook.id, this_hour + 1, 200, 20.0),
        logged(hook.id, this_hour + 2, 500, 40.0),
        logged(hook.id, this_hour - 5 * 3600 + 10, 200, 300.0),
        logged(hook.id, this_hour - 8 * 86400, 200, 1.0),  # older than the week
    ]
    await db_hub.store.record_attempts(records, now)
    points = await DashboardService(db_hub.service).hourly(hook.id)
    assert len(points) == 7 * 24 and points[-1].hour == this_hour
    assert [p.hour - points[0].hour for p in points] == [i * 3600.0 for i in range(168)]
    last, earlier = points[-1], points[-6]
    assert (last.attempts, last.succeeded, last.avg_ms, last.success_rate) == (2, 1, 30.0, 50.0)
    assert last.p95_ms == 50.0  # the bound of the bucket holding the slower attempt
    assert (earlier.attempts, earlier.succeeded, earlier.p95_ms) == (1, 1, 500.0)
    assert sum(p.attempts for p in points) == 3
    with pytest.raises(NotFoundError):
        await DashboardService(db_hub.service).hourly(999)


async def test_log_filters_each_outcome_event_type_and_time(db_hub: Hub) -> None:
    now = time.time()
    hook = await db_hub.service.create_webhook(URL, ["order.created", "order.paid"])
    other = await db_hub.service.create_webhook(URL + "/2", ["order.created"])
    rows = [
        logged(hook.id, now - 50, 200, 5.0),
        logged(hook.id, now - 40, 404, 5.0, "order.paid"),
        logged(hook.id, now - 30, 503, 5.0),
        logged(hook.id, now - 20, None, 5.0, "order.paid"),
        logged(other.id, now - 10, 200, 5.0),
    ]
    await db_hub.store.record_attempts(rows, now)
    queued = await publish_at(db_hub, now - 5, "order.created", 1)
    real = [
        r for r in attempts(queued, now - 5, Outcome(200, 5.0), "order.created", final=True) if r.webhook_id == hook.id
    ]
    await db_hub.store.record_attempts(real, now)
    reader = DashboardService(db_hub.service)

    async def statuses(**chosen: object) -> list[int | None]:
        given: dict[str, Any] = {"webhook_id": None, "outcome": "all", "event_type": None, "since": None, "until": None}
        page = await reader.log(parse_filter(**{**given, **chosen}))
        return [entry.attempt.status_code for entry in page.entries]

    assert await statuses() == [200, 200, None, 503, 404, 200]
    assert await statuses(webhook_id=hook.id) == [200, None, 503, 404, 200]
    assert await statuses(outcome="success") == [200, 200, 200]
    assert await statuses(outcome="failed") == [None, 503, 404]
    assert await statuses(outcome="http_4xx") == [404]
    assert await statuses(outcome="http_5xx") == [503]
    assert await statuses(outcome="no_response") == [None]
    assert await statuses(outcome="test", webhook_id=hook.id) == [None, 503, 404, 200]
    assert await statuses(event_type="order.paid") == [None, 404]
    assert await statuses(since=now - 35, until=now - 8) == [200, None, 503]
    with pytest.raises(InvalidArgumentError, match="outcome must be one of"):
        parse_filter(None, "broken", None, None, None)
    with pytest.raises(InvalidArgumentError, match="before the 'to' time"):
        parse_filter(None, "all", None, now, now - 1)
    with pytest.raises(NotFoundError):
        await reader.log(AttemptFilter(webhook_id=999))


async def test_log_pages_forward_and_back_without_gaps(db_hub: Hub) -> None:
    now = time.time()
    hook = await db_hub.service.create_webhook(URL, ["order.created"])
    await db_hub.store.record_attempts([logged(hook.id, now - i, 200, float(i)) for i in range(23)], now)
    reader = DashboardService(db_hub.service)
    chosen = AttemptFilter(webhook_id=hook.id)
    first = await reader.log(chosen, size=10)
    assert first.newer_than is None and first.older_than is not None and len(first.entries) == 10
    second = await reader.log(chosen, before=first.older_than, size=10)
    third = await reader.log(chosen, before=second.older_than, size=10)
    assert len(third.entries) == 3 and third.older_than is None and third.newer_than is not None
    ids = [e.attempt.attempt_id for page in (first, second, third) for e in page.entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 23
    back = await reader.log(chosen, after=third.newer_than, size=10)
    assert [e.attempt.attempt_id for e in back.entries] == [e.attempt.attempt_id for e in second.entries]
    assert back.newer_than == second.newer_than and back.older_than == second.older_than
    newest = await reader.log(chosen, after=back.newer_than, size=10)
    assert [e.attempt.attempt_id for e in newest.entries] == [e.attempt.attempt_id for e in first.entries]
    assert newest.newer_than is None


async def test_an_attempt_shows_the_request_exactly_as_the_receiver_got_it(
    database_url: str, receiver: Receiver
) -> None:
    async with Hub.open(make_settings(database_url)) as hub:
        hook = await hub.service.create_webhook(receiver.url, ["order.created"])
        await hub.publish("order.created", dict(hub.catalog.get("order.created").example))
        await hub.service.test_webhook(hook.id)
        sent = await receiver.wait_for(2)
        reader = DashboardService(hub.service)
        page = await wait_until(lambda: _full_log(reader, hook.id, 2), timeout=10)
        by_event = {received.headers["webhook-id"]: received for received in sent}
        for entry in page:
            detail = await reader.attempt(entry.attempt.attempt_id)
            received = by_event[entry.attempt.event_id]
            got = {name.lower(): value for name, value in received.headers.items()}
            assert detail.request is not None and detail.request.exact
            assert detail.request.body.encode() == received.body
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent"):
                assert detail.request.headers[name] == got[name], name
            assert detail.request.headers["content-length"] == got["content-length"]
            assert detail.request.headers["host"] == got["host"]
            assert detail.outcome.startswith("Delivered: the receiver answered 200 OK")

        real = next(e for e in page if not e.attempt.is_test)
        await hub.service.set_enabled(hook.id, False)  # other changes leave the signature exact
        await hub.service.set_enabled(hook.id, True)
        toggled = await reader.attempt(real.attempt.attempt_id)
        assert toggled.request is not None and toggled.request.exact
        await hub.service.rotate_secret(hook.id, 1)
        after_rotation = await reader.attempt(real.attempt.attempt_id)
        assert after_rotation.request is not None and not after_rotation.request.exact
        assert any("rotated after this attempt" in note for note in after_rotation.request.notes)
        # During the grace period both secrets sign, and the rebuilt request has both signatures.
        during = await hub.service.test_webhook(hook.id)
        (*_, third) = await receiver.wait_for(3)
        two = await reader.attempt(during.attempt_id)
        signature = {k.lower(): v for k, v in third.headers.items()}["webhook-signature"]
        assert two.request is not None and two.request.exact and " " in signature
        assert two.request.headers["webhook-signature"] == signature

        await hub.store._write(lambda conn: conn.execute(delete(events).where(events.c.id == real.attempt.event_id)))
        pruned = await reader.attempt(real.attempt.attempt_id)
        assert pruned.request is not None and pruned.request.body == ""
        assert any("pruned" in note for note in pruned.request.notes)
        with pytest.raises(NotFoundError):
            await reader.attempt(10**12)


async def _full_log(reader: DashboardService, webhook_id: int, count: int) -> list[LogEntry] | None:
    page = await reader.log(AttemptFilter(webhook_id=webhook_id))
    return page.entries if len(page.entries) >= count else None


async def test_delivery_states_come_from_the_deliveries_table(db_hub: Hub) -> None:
    hook = await db_hub.service.create_webhook(URL, ["order.created"])
    queued = await publish_at(db_hub, time.time(), "order.created", 1)
    await db_hub.store.record_attempts(
        attempts(queued, time.time(), Outcome(500, 3.0), "order.created", final=True), time.time()
    )
    (attempt_row,) = (await DashboardService(db_hub.service).log(AttemptFilter(webhook_id=hook.id))).entries
    detail = await DashboardService(db_hub.service).attempt(attempt_row.attempt.attempt_id)
    assert detail.delivery is not None and detail.delivery.state == "failed"
    assert "500 Internal Server Error" in detail.outcome and "failed on its side" in detail.outcome
    state = await db_hub.store.scalar(select(deliveries.c.state).where(deliveries.c.id == detail.delivery.id))
    assert state == "failed"
