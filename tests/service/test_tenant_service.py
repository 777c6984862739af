"""The service for one tenant: what it registers and publishes is that tenant's, and it sees no
other tenant's webhooks."""

from __future__ import annotations

import time

import pytest

from webhook_mcp import Hub
from webhook_mcp.core.errors import NotFoundError

pytestmark = pytest.mark.anyio
EVENT = "order.created"


async def test_a_tenants_service_registers_publishes_and_sees_its_own(hub: Hub) -> None:
    acme = await hub.store.create_tenant("acme", time.time())
    shop = hub.service.for_tenant(acme.id)
    ours = await shop.create_webhook("https://acme.example/hook", [EVENT])
    theirs = await hub.service.create_webhook("https://default.example/hook", [EVENT])
    assert [w.id for w in (await shop.list_webhooks()).webhooks] == [ours.id]
    with pytest.raises(NotFoundError):
        await shop.get_webhook(theirs.id)
    assert (await shop.publish(EVENT, {"id": "ord_1"})).queued == 1  # its own webhook only
    assert (await hub.service.publish(EVENT, {"id": "ord_1"})).queued == 1  # the default tenant's
    assert hub.service.tenant_id is None and shop.store is not hub.store


async def test_the_dashboards_reads_for_a_tenant_show_its_own_only(hub: Hub) -> None:
    from webhook_mcp.service.dashboard import DashboardService
    from webhook_mcp.storage.dashboard import AttemptFilter

    acme = await hub.store.create_tenant("acme", time.time())
    shop = hub.service.for_tenant(acme.id)
    ours = await shop.create_webhook("https://acme.example/hook", [EVENT])
    theirs = await hub.service.create_webhook("https://default.example/hook", [EVENT])
    await hub.service.publish(EVENT, {"id": "ord_1"})
    reader = DashboardService(shop)
    assert [row.webhook.id for row in await reader.health()] == [ours.id]
    assert (await reader.log(AttemptFilter())).entries == []
    for read in (reader.hourly(theirs.id), reader.log(AttemptFilter(webhook_id=theirs.id))):
        with pytest.raises(NotFoundError, match=f"no webhook with id {theirs.id};"):
            await read
    everyone = DashboardService(hub.service)
    assert {row.webhook.id for row in await everyone.health()} == {ours.id, theirs.id}
