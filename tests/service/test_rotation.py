"""Secret rotation: during the grace period every request carries the new and the previous
secret's signatures, so a receiver verifying with either accepts it; after it only the new one.
Real receivers, real databases (both), the reference libraries as the receiver's verifier; time
is moved by a clock given to the dispatcher and the service, never waited for."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import svix.webhooks
from sqlalchemy import select

from conftest import Received, Receiver, make_settings, migrate, wait_until
from webhook_mcp import (
    Dispatcher,
    Hub,
    InvalidArgumentError,
    NotFoundError,
    WebhookService,
    WebhookVerificationError,
    verify,
)
from webhook_mcp.core.vault import Vault
from webhook_mcp.storage.schema import deliveries, webhooks

pytestmark = pytest.mark.anyio

EVENT = "order.created"
HOUR = 3600.0


class Clock:
    """Real time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def shifted(database_url: str, clock: Clock) -> AsyncIterator[tuple[Hub, WebhookService]]:
    """A hub whose dispatcher and service both run on ``clock``."""
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        dispatcher = Dispatcher(hub.store, hub.sender, hub.settings, clock=clock)
        service = WebhookService(
            hub.store, hub.catalog, hub.sender, hub.settings, on_publish=dispatcher.wake, clock=clock
        )
        task = asyncio.create_task(dispatcher.run())
        try:
            yield hub, service
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def signatures(received: Received) -> list[str]:
    lowered = {k.lower(): v for k, v in received.headers.items()}
    return lowered["webhook-signature"].split(" ")


def accepts(secret: str, received: Received) -> bool:
    """What a receiver holding ``secret`` concludes, asked of the reference libraries and of
    ``verify`` (they must agree). Requests stamped on a moved clock are outside any receiver's
    tolerance, so for those the libraries' own ``sign`` decides whether one signature matches."""
    lowered = {k.lower(): v for k, v in received.headers.items()}
    stamp = int(lowered["webhook-timestamp"])
    verdicts = []
    if abs(time.time() - stamp) < 240:
        for library in (standardwebhooks.Webhook(secret), svix.webhooks.Webhook(secret)):
            try:
                library.verify(received.body, received.headers)
                verdicts.append(True)
            except (standardwebhooks.WebhookVerificationError, svix.webhooks.WebhookVerificationError):
                verdicts.append(False)
        tolerance = 300.0
    else:
        at = datetime.fromtimestamp(stamp, UTC)
        for library in (standardwebhooks.Webhook(secret), svix.webhooks.Webhook(secret)):
            expected = library.sign(lowered["webhook-id"], at, received.body.decode())
            verdicts.append(expected in signatures(received))
        tolerance = 48 * HOUR
    try:
        verify(received.body, received.headers, secret, tolerance=tolerance)
        verdicts.append(True)
    except WebhookVerificationError:
        verdicts.append(False)
    assert len(set(verdicts)) == 1, f"the verifiers disagree: {verdicts}"
    return verdicts[0]


def data(hub: Hub) -> dict[str, Any]:
    return dict(hub.catalog.get(EVENT).example)


async def all_succeeded(hub: Hub, count: int) -> bool:
    rows = await hub.store.fetch_all(select(deliveries.c.state))
    return len(rows) == count and all(row.state == "succeeded" for row in rows)


async def test_deliveries_verify_with_both_secrets_during_grace_and_only_the_new_after(
    receiver: Receiver, database_url: str
) -> None:
    clock = Clock()
    async with shifted(database_url, clock) as (hub, service):
        hook = await service.create_webhook(receiver.url, [EVENT])
        old = (await service.get_secret(hook.id)).secret
        before = clock()
        rotated = await service.rotate_secret(hook.id)  # the default grace: 24 hours
        new = rotated.secret
        assert new.startswith("whsec_") and new != old
        assert rotated.grace_hours == 24 and not rotated.dropped_older_secret
        ends = rotated.previous_secret_expires_at
        assert ends is not None and abs(ends.timestamp() - (before + 24 * HOUR)) < 5
        assert "two signatures" in rotated.next_steps and "test_webhook" in rotated.next_steps
        assert (await service.get_secret(hook.id)).secret == new
        assert (await service.get_secret(hook.id)).previous_secret_expires_at == ends
        assert (await service.get_webhook(hook.id)).secret_rotation_ends_at == ends

        # During the grace period: a real delivery and a test, each verifiable with either secret.
        during = await service.publish(EVENT, data(hub))
        (delivered,) = await receiver.wait_for(1)
        tested = await service.test_webhook(hook.id)
        assert tested.success
        for request in receiver.requests:
            assert len(signatures(request)) == 2
            assert accepts(new, request) and accepts(old, request)
        assert verify(delivered.body, delivered.headers, old)["id"] == during.event_id

        # Time moves on only once the results are written: a lease still open when the clock
        # jumps would come due and be sent again (at least once, as documented).
        assert await wait_until(lambda: all_succeeded(hub, 1))

        # A minute before the end, still both.
        clock.offset = 24 * HOUR - 60
        await service.publish(EVENT, data(hub))
        late = (await receiver.wait_for(3))[2]
        assert accepts(new, late) and accepts(old, late)

        assert await wait_until(lambda: all_succeeded(hub, 2))

        # After it: only the new secret signs.
        clock.offset = 24 * HOUR + 1
        after = await service.publish(EVENT, data(hub))
        got = (await receiver.wait_for(4))[3]
        assert verify(got.body, got.headers, new, tolerance=48 * HOUR)["id"] == after.event_id
        assert len(signatures(got)) == 1
        assert accepts(new, got) and not accepts(old, got)
        retested = await service.test_webhook(hook.id)
        assert retested.success
        (test_request,) = [r for r in receiver.requests if retested.event_id.encode() in r.body]
        assert accepts(new, test_request) and not accepts(old, test_request)
        assert len(signatures(test_request)) == 1

        assert (await service.get_secret(hook.id)).previous_secret_expires_at is None
        assert (await service.get_webhook(hook.id)).secret_rotation_ends_at is None
        assert await wait_until(lambda: all_succeeded(hub, 3))

        # The expired previous secret is then wiped from the database.
        await hub.store.forget_expired_secrets(clock())
        row = (await hub.store.fetch_all(select(webhooks).where(webhooks.c.id == hook.id)))[0]
        assert row.previous_secret is None and row.previous_secret_expires_at is None
        assert (await service.get_secret(hook.id)).secret == new


@pytest.fixture
async def db_hub(database_url: str) -> AsyncIterator[Hub]:
    async with Hub.open(make_settings(database_url), dispatch=False) as opened:
        yield opened


async def test_zero_grace_switches_at_once(db_hub: Hub, receiver: Receiver) -> None:
    hook = await db_hub.service.create_webhook(receiver.url, [EVENT])
    old = (await db_hub.service.get_secret(hook.id)).secret
    rotated = await db_hub.service.rotate_secret(hook.id, grace_hours=0)
    assert rotated.previous_secret_expires_at is None and rotated.grace_hours == 0
    assert "new secret only" in rotated.next_steps
    assert (await db_hub.service.get_secret(hook.id)).previous_secret_expires_at is None
    assert (await db_hub.service.get_webhook(hook.id)).secret_rotation_ends_at is None
    assert (await db_hub.service.test_webhook(hook.id)).success
    (request,) = receiver.requests
    assert len(signatures(request)) == 1
    assert accepts(rotated.secret, request) and not accepts(old, request)
    row = (await db_hub.store.fetch_all(select(webhooks).where(webhooks.c.id == hook.id)))[0]
    assert row.previous_secret is None and row.previous_secret_expires_at is None


async def test_a_second_rotation_during_grace_keeps_only_the_newest_previous_secret(
    db_hub: Hub, receiver: Receiver
) -> None:
    hook = await db_hub.service.create_webhook(receiver.url, [EVENT])
    first = (await db_hub.service.get_secret(hook.id)).secret
    second = await db_hub.service.rotate_secret(hook.id, grace_hours=48)
    third = await db_hub.service.rotate_secret(hook.id, grace_hours=2)
    assert third.dropped_older_secret and "stopped signing too" in third.next_steps
    assert not second.dropped_older_secret
    assert len({first, second.secret, third.secret}) == 3
    # The newer rotation sets the grace period: 2 hours from now, not the 48 of the first.
    ends = third.previous_secret_expires_at
    assert ends is not None and abs(ends.timestamp() - (time.time() + 2 * HOUR)) < 5
    assert (await db_hub.service.get_secret(hook.id)).previous_secret_expires_at == ends

    assert (await db_hub.service.test_webhook(hook.id)).success
    (request,) = receiver.requests
    assert len(signatures(request)) == 2
    assert accepts(third.secret, request) and accepts(second.secret, request)
    assert not accepts(first, request)

    # Rotating with grace 0 during a grace period drops the previous secret too.
    fourth = await db_hub.service.rotate_secret(hook.id, grace_hours=0)
    assert fourth.dropped_older_secret and fourth.previous_secret_expires_at is None
    assert (await db_hub.service.test_webhook(hook.id)).success
    last = receiver.requests[1]
    assert accepts(fourth.secret, last) and not accepts(third.secret, last)


async def test_concurrent_rotations_lose_no_secret(db_hub: Hub) -> None:
    hook = await db_hub.service.create_webhook("https://hooks.example.com/x", [EVENT])
    original = (await db_hub.service.get_secret(hook.id)).secret
    results = await asyncio.gather(*(db_hub.service.rotate_secret(hook.id, grace_hours=1) for _ in range(6)))
    issued = [r.secret for r in results]
    current = (await db_hub.service.get_secret(hook.id)).secret
    assert current in issued
    # Applied one after another: the previous secret is one of the issued ones, never the original.
    row = (await db_hub.store.fetch_all(select(webhooks).where(webhooks.c.id == hook.id)))[0]
    previous = db_hub.service._vault.reveal(row.previous_secret)  # stored encrypted
    assert previous in set(issued) - {current}
    assert previous != original
    assert sum(r.dropped_older_secret for r in results) == 5


@pytest.mark.parametrize(
    ("grace", "message"),
    [
        (-1, "between 0 .switch at once. and 720"),
        (720.5, "got 720.5"),
        (float("nan"), "grace_hours"),
        (float("inf"), "grace_hours"),
    ],
)
async def test_grace_hours_out_of_bounds_are_refused(hub: Hub, grace: float, message: str) -> None:
    hook = await hub.service.create_webhook("https://hooks.example.com/x", [EVENT])
    secret = (await hub.service.get_secret(hook.id)).secret
    with pytest.raises(InvalidArgumentError, match=message):
        await hub.service.rotate_secret(hook.id, grace_hours=grace)
    assert (await hub.service.get_secret(hook.id)).secret == secret


async def test_grace_limits_are_inclusive_and_unknown_ids_say_what_to_do(hub: Hub) -> None:
    hook = await hub.service.create_webhook("https://hooks.example.com/x", [EVENT])
    longest = await hub.service.rotate_secret(hook.id, grace_hours=720)
    assert longest.previous_secret_expires_at is not None
    assert longest.previous_secret_expires_at > datetime.now(UTC)
    with pytest.raises(NotFoundError, match="no webhook with id 42; call list_webhooks"):
        await hub.service.rotate_secret(42)


async def test_migration_0003_keeps_every_row_both_ways(database_url: str, receiver: Receiver) -> None:
    """Upgrading a database from before rotation existed (and downgrading again) adds and drops
    two columns in place: no table rebuild, whose DROP on SQLite would cascade to the deliveries."""
    from sqlalchemy import func, inspect, text

    from webhook_mcp.storage import engine as database

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    now = time.time()
    await asyncio.to_thread(migrate, database_url, "0001")
    engine = database.create_sync(database_url)
    try:
        # Rows as the previous release wrote them, with the 0001 columns only.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO webhooks (url, events, secret, created_at, updated_at) "
                    "VALUES (:url, :events, :secret, :now, :now)"
                ),
                {"url": receiver.url, "events": f'["{EVENT}"]', "secret": secret, "now": now},
            )
            hook_id = conn.scalar(text("SELECT max(id) FROM webhooks"))
            conn.execute(
                text("INSERT INTO events (id, type, body, created_at) VALUES ('evt_1', :type, '{}', :now)"),
                {"type": EVENT, "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, created_at, updated_at) "
                    "VALUES (:hook, 'evt_1', 'held', :now, :now, :now)"
                ),
                {"hook": hook_id, "now": now},
            )
    finally:
        engine.dispose()

    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        assert await asyncio.to_thread(database.current_revision, database_url) == database.head_revision()
        assert (await hub.service.get_secret(hook_id)).secret == secret
        assert (await hub.service.get_webhook(hook_id)).secret_rotation_ends_at is None
        assert len(await hub.store.fetch_all(select(deliveries))) == 1
        rotated = await hub.service.rotate_secret(hook_id)
        assert (await hub.service.test_webhook(hook_id)).success
        assert accepts(secret, receiver.requests[0]) and accepts(rotated.secret, receiver.requests[0])

    await asyncio.to_thread(migrate, database_url, "0001", down=True)
    engine = database.create_sync(database_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("webhooks")}
        assert "previous_secret" not in columns and "previous_secret_expires_at" not in columns
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(deliveries)) == 1
            stored = conn.scalar(select(webhooks.c.secret))  # encrypted at rest, with the suite's key
            assert Vault(make_settings(database_url).secret_key).reveal(stored) == rotated.secret
    finally:
        engine.dispose()
