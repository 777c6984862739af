"""Publishing several events at once: ``Hub.publish_many`` (all or nothing) and the group
committer that lets concurrent publishes share transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import wait_until
from webhook_mcp import Hub
from webhook_mcp.core.errors import BatchTooLargeError, InvalidBatchError
from webhook_mcp.service.committer import GroupCommitter
from webhook_mcp.storage.schema import events

pytestmark = pytest.mark.anyio

URL = "https://example.com/hook"


async def count_events(hub: Hub) -> int:
    return int(await hub.store.scalar(select(func.count()).select_from(events)))


async def test_publish_many_stores_all_in_order(hub: Hub) -> None:
    await hub.service.create_webhook(URL, ["order.created", "order.paid"])
    published = await hub.publish_many(
        [
            {"type": "order.created", "data": {"id": "ord_1", "total": 1999, "currency": "EUR"}},
            {"type": "order.paid", "data": {"id": 42}, "idempotency_key": "paid-42"},
            {"type": "order.paid", "data": {"id": 42}, "idempotency_key": "paid-42"},
        ]
    )
    assert [p.type for p in published] == ["order.created", "order.paid", "order.paid"]
    assert [p.duplicate for p in published] == [False, False, True]
    assert published[2].event_id == published[1].event_id and published[2].queued == 1
    assert await count_events(hub) == 2


async def test_publish_many_is_all_or_nothing(hub: Hub) -> None:
    with pytest.raises(InvalidBatchError) as info:
        await hub.publish_many(
            [
                {"type": "order.created", "data": {"id": 1}},
                {"type": "order.created", "data": {"no_id": 1}},
                {"type": "order.nope", "data": {"id": 1}},
            ]
        )
    assert sorted(info.value.invalid) == [1, 2]
    assert info.value.invalid[1] == ["data: 'id' is a required property"]
    assert "2 of 3 events are invalid" in str(info.value)
    assert await count_events(hub) == 0
    too_many = [{"type": "order.created", "data": {"id": n}} for n in range(hub.settings.max_batch_events + 1)]
    with pytest.raises(BatchTooLargeError, match="WEBHOOK_MCP_MAX_BATCH_EVENTS"):
        await hub.publish_many(too_many)


async def test_concurrent_publishes_share_transactions(hub: Hub) -> None:
    hook = await hub.service.create_webhook(URL, ["order.created"])
    committer = hub.service.publisher.committer
    before = committer.commits
    results = await asyncio.gather(*(hub.publish("order.created", {"id": n}) for n in range(60)))
    assert len({r.event_id for r in results}) == 60 and all(r.queued == 1 and not r.duplicate for r in results)
    assert committer.commits - before < 60
    assert await count_events(hub) == 60
    assert (await hub.service.get_stats(hook.id)).pending_deliveries == 60


async def test_concurrent_publishes_of_one_key_store_one_event(hub: Hub) -> None:
    results = await asyncio.gather(
        *(hub.publish("order.created", {"id": 1}, idempotency_key="same") for _ in range(20))
    )
    assert len({r.event_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await count_events(hub) == 1


async def test_a_lone_publish_is_committed_at_once() -> None:
    calls: list[list[int]] = []

    async def commit(items: list[int]) -> list[int]:
        calls.append(items)
        return [item * 10 for item in items]

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    assert await committer.submit([1, 2]) == [10, 20]
    assert calls == [[1, 2]]


async def test_a_failing_shared_commit_gives_each_caller_its_own_outcome() -> None:
    release = asyncio.Event()
    calls: list[list[str]] = []

    async def commit(items: list[str]) -> list[str]:
        calls.append(items)
        if items == ["first"]:
            await release.wait()
        if "poison" in items:
            raise RuntimeError("poison refused")
        return [item.upper() for item in items]

    committer: GroupCommitter[str, str] = GroupCommitter(commit)
    first = asyncio.create_task(committer.submit(["first"]))
    await wait_until(lambda: calls)
    later: list[asyncio.Task[Any]] = [
        asyncio.create_task(committer.submit(items)) for items in (["a", "b"], ["poison"], ["c"])
    ]
    release.set()  # the three callers were scheduled first: they are waiting when the first commit ends
    assert await first == ["FIRST"]
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert outcomes[0] == ["A", "B"] and outcomes[2] == ["C"]
    assert isinstance(outcomes[1], RuntimeError)
    # The three waiting callers went into one shared commit, then (it failed) one each.
    assert calls == [["first"], ["a", "b", "poison", "c"], ["a", "b"], ["poison"], ["c"]]


async def test_published_events_get_time_ordered_ids(hub: Hub) -> None:
    import uuid

    first = await hub.publish("order.created", {"id": "ord_1"})
    batch = await hub.publish_many([{"type": "order.created", "data": {"id": n}} for n in range(3)])
    ids = [first.event_id, *(p.event_id for p in batch)]
    assert all(uuid.UUID(i.removeprefix("evt_")).version == 7 for i in ids)
    assert [i[4:16] for i in ids] == sorted(i[4:16] for i in ids)


async def test_commits_in_flight_run_side_by_side_and_the_rest_wait_together() -> None:
    gates = {name: asyncio.Event() for name in ("a", "b")}
    calls: list[list[str]] = []

    async def commit(items: list[str]) -> list[str]:
        calls.append(items)
        if items[0] in gates:
            await gates[items[0]].wait()
        return [item.upper() for item in items]

    committer: GroupCommitter[str, str] = GroupCommitter(commit, in_flight=2)
    first = asyncio.create_task(committer.submit(["a"]))
    await wait_until(lambda: calls == [["a"]])
    second = asyncio.create_task(committer.submit(["b"]))  # a second commit starts at once
    await wait_until(lambda: calls == [["a"], ["b"]])
    later = [asyncio.create_task(committer.submit([item])) for item in ("c", "d")]
    await wait_until(lambda: all(not task.done() for task in later) and len(committer._waiting) == 2)
    gates["b"].set()  # the first commit to end takes everything that waited, in one group
    assert await asyncio.gather(second, *later) == [["B"], ["C"], ["D"]]
    assert calls == [["a"], ["b"], ["c", "d"]]
    assert not first.done()
    gates["a"].set()
    assert await first == ["A"]
    await committer.aclose()
