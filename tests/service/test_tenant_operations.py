"""The operator's tenant operations: tokens shown once and stored hashed, names that clash, and
deleting a tenant (marked at once, purged in batches while other tenants' deliveries go on)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import func, select

from conftest import Receiver, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from webhook_mcp.delivery.purge import purge_deleted_tenants
from webhook_mcp.service.tenants import TenantOperations, token_hash
from webhook_mcp.storage.schema import deliveries, delivery_attempts, events, tenant_tokens, tenants, webhooks

pytestmark = pytest.mark.anyio
EVENT = "order.created"


@pytest.fixture
async def ops(hub: Hub) -> TenantOperations:
    return TenantOperations(hub.store)


async def test_a_token_is_shown_once_stored_hashed_and_revocable(hub: Hub, ops: TenantOperations) -> None:
    acme = await ops.create("acme")
    issued = await ops.issue_token("acme", label="storefront")
    assert issued.token.startswith("wmt_") and len(issued.token) > 40
    stored = await hub.store.fetch_all(select(tenant_tokens))
    assert [row.token_hash for row in stored] == [token_hash(issued.token)]
    assert issued.token not in repr([tuple(row) for row in stored])  # only its first characters
    listed = await ops.list_tokens()
    assert [(t.id, t.tenant, t.label) for t in listed] == [(issued.info.id, "acme", "storefront")]
    assert listed[0].hint == issued.token[:12] + "…" and "token" not in listed[0].as_dict()
    assert await ops.resolve(issued.token) == acme.id
    assert await ops.resolve(issued.token + "x") is None
    assert await ops.resolve("not-a-token") is None
    await ops.revoke_token(issued.info.id)
    assert await ops.resolve(issued.token) is None
    with pytest.raises(NotFoundError, match=f"no token with id {issued.info.id}"):
        await ops.revoke_token(issued.info.id)


async def test_names_clash_unknown_names_are_not_found_and_default_stays(ops: TenantOperations) -> None:
    await ops.create("acme")
    with pytest.raises(ConflictError, match="'acme' exists already"):
        await ops.create("acme")
    await ops.create("globex")
    with pytest.raises(ConflictError, match="'globex' exists already"):
        await ops.rename("acme", "globex")
    assert (await ops.rename("acme", "acme-shop")).name == "acme-shop"
    with pytest.raises(NotFoundError, match="no tenant named 'acme'; run 'webhook-mcp tenants list'"):
        await ops.issue_token("acme")
    with pytest.raises(InvalidArgumentError, match="tenant name 'Bad Name' is not valid"):
        await ops.create("Bad Name")
    with pytest.raises(InvalidArgumentError, match="'default' tenant cannot be deleted"):
        await ops.delete("default")
    assert [t.name for t in await ops.list_tenants()] == ["default", "acme-shop", "globex"]


async def test_a_token_of_one_tenant_revokes_only_through_its_tenant(ops: TenantOperations) -> None:
    await ops.create("acme")
    await ops.create("globex")
    theirs = await ops.issue_token("globex")
    with pytest.raises(NotFoundError):
        await ops.revoke_token(theirs.info.id, tenant="acme")
    assert (await ops.revoke_token(theirs.info.id, tenant="globex")).tenant == "globex"


async def test_a_deleted_tenant_disappears_at_once(hub: Hub, ops: TenantOperations) -> None:
    acme = await ops.create("acme")
    token = (await ops.issue_token("acme")).token
    shop = hub.service.for_tenant(acme.id)
    hook = await shop.create_webhook("https://acme.example/hook", [EVENT])
    await ops.delete("acme")
    assert [t.name for t in await ops.list_tenants()] == ["default"]
    assert await ops.resolve(token) is None
    assert await ops.list_tokens() == []
    assert not (await hub.service.get_webhook(hook.id)).enabled  # no worker claims its deliveries now
    with pytest.raises(NotFoundError):
        await ops.delete("acme")
    with pytest.raises(ConflictError):  # the name stays taken until the last row is gone
        await ops.create("acme")
    await ops.purge(acme.id)
    assert (await ops.create("acme")).name == "acme"  # the name is free again


@pytest.fixture
async def delivering(database_url: str) -> AsyncIterator[Hub]:
    async with Hub.open(make_settings(database_url), dispatch=True) as opened:
        yield opened


async def _count(hub: Hub, table: object, tenant_id: int) -> int:
    if table is events:
        where = events.c.tenant_id == tenant_id
        return int(await hub.store.scalar(select(func.count()).select_from(events).where(where)))
    hooks = select(webhooks.c.id).where(webhooks.c.tenant_id == tenant_id)
    column = deliveries.c.webhook_id if table is deliveries else delivery_attempts.c.webhook_id
    return int(await hub.store.scalar(select(func.count()).select_from(table).where(column.in_(hooks))))  # type: ignore[arg-type]


async def _has(hub: Hub, tenant_id: int, attempts: int) -> bool:
    return await _count(hub, delivery_attempts, tenant_id) == attempts


async def test_purge_goes_in_batches_while_another_tenant_is_delivered(
    delivering: Hub, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    hub = delivering
    ops = TenantOperations(hub.store)
    doomed, quiet = await ops.create("doomed"), await ops.create("quiet")
    doomed_rx, quiet_rx = await receiver_factory(), await receiver_factory()
    await hub.service.for_tenant(doomed.id).create_webhook(doomed_rx.url, [EVENT])
    await hub.service.for_tenant(quiet.id).create_webhook(quiet_rx.url, [EVENT])
    loud = hub.service.for_tenant(doomed.id)
    await loud.publish_events([{"type": EVENT, "data": {"id": f"o{i}"}} for i in range(60)])
    await doomed_rx.wait_for(60)
    await wait_until(lambda: _has(hub, doomed.id, 60))
    await ops.delete("doomed")
    steps: list[int] = []

    async def purge_step_by_step() -> None:
        while removed := await hub.store.purge_tenant_step(doomed.id, 7):
            steps.append(removed)
            await asyncio.sleep(0)

    quiet_shop = hub.service.for_tenant(quiet.id)
    publishing = [quiet_shop.publish(EVENT, {"id": f"q{i}"}) for i in range(20)]
    await asyncio.gather(purge_step_by_step(), *publishing)
    await quiet_rx.wait_for(20)
    assert max(steps) == 7 and len(steps) > 3 * 60 // 7  # attempts, deliveries, events: small batches
    for table in (delivery_attempts, deliveries, events):
        assert await _count(hub, table, doomed.id) == 0
    assert await hub.store.scalar(select(func.count()).select_from(tenants).where(tenants.c.id == doomed.id)) == 0
    assert len(doomed_rx.requests) == 60  # nothing more went to the deleted tenant's endpoint
    assert await purge_deleted_tenants(hub.store) == 0  # nothing left for the retention loop


async def test_the_retention_pass_removes_what_deleted_tenants_left(hub: Hub, ops: TenantOperations) -> None:
    from webhook_mcp.delivery.retention import Retention

    doomed = await ops.create("doomed")
    shop = hub.service.for_tenant(doomed.id)
    await shop.create_webhook("https://doomed.example/in", [EVENT])
    await shop.publish_events([{"type": EVENT, "data": {"id": f"o{i}"}} for i in range(5)])
    await ops.delete("doomed")
    await Retention(hub.store, hub.settings, batch=2).upkeep()
    assert await hub.store.deleted_tenants() == []
    assert await _count(hub, events, doomed.id) == 0
    assert await hub.store.scalar(select(func.count()).select_from(webhooks)) == 0


async def test_the_overview_counts_webhooks_and_tokens_and_shows_tenants_being_deleted(
    hub: Hub, ops: TenantOperations
) -> None:
    acme, gone = await ops.create("acme"), await ops.create("gone")
    for n in range(3):
        await hub.service.for_tenant(acme.id).create_webhook(f"https://acme.example/{n}", [EVENT])
    await hub.service.for_tenant(gone.id).create_webhook("https://gone.example/in", [EVENT])
    await hub.service.create_webhook("https://default.example/in", [EVENT])
    await ops.issue_token("acme")
    await ops.issue_token("acme", "second")
    await ops.delete("gone")  # marked, not yet purged
    rows = {(t.name, t.webhooks, t.tokens, t.deleting, t.is_default) for t in await ops.overview()}
    assert rows == {("default", 1, 0, False, True), ("acme", 3, 2, False, False), ("gone", 1, 0, True, False)}
    one = await ops.summary("acme")
    assert (one.id, one.webhooks, one.tokens, one.deleting) == (acme.id, 3, 2, False)
    with pytest.raises(NotFoundError, match="no tenant named 'gone'"):
        await ops.summary("gone")
    ops.purge_in_background(gone.id)  # what the dashboard and DELETE /v1/tenants/NAME start

    async def purged() -> bool:
        return [t.name for t in await ops.overview()] == ["default", "acme"]

    await wait_until(purged)
