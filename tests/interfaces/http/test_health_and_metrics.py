"""``/healthz``, ``/readyz`` and ``/metrics`` on serve's HTTP app and on the worker's port, in
process through ASGI, against real databases and a real receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from conftest import Receiver, make_settings, wait_until
from webhook_mcp import Hub
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.http.operations import create_worker_app
from webhook_mcp.service.monitoring import Monitor, head_revision
from webhook_mcp.storage.schema import deliveries

pytestmark = pytest.mark.anyio

TOKEN = "metrics-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
EVENT = "order.created"
BASE = "http://127.0.0.1:8000"


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Hub, Monitor]]:
    settings = make_settings(database_url, api_token=TOKEN)
    async with Hub.open(settings, dispatch=True) as hub:
        monitor = Monitor(hub, cache_seconds=0)
        app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000, monitor)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield client, hub, monitor


async def test_health_is_open_and_readiness_says_what_it_checked(
    served: tuple[httpx.AsyncClient, Hub, Monitor],
) -> None:
    client, _hub, _monitor = served
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # A platform's probe names the pod's address as Host and carries no token.
    assert (await client.get("/healthz", headers={"host": "10.1.2.3:8000"})).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["problems"] == []
    assert body["checks"]["database"]["schema"] == head_revision() is not None
    assert body["checks"]["dispatcher"]["ok"] is True
    refused = await client.post("/readyz")
    assert refused.status_code == 405 and "GET" in refused.json()["error"]["message"]


async def test_metrics_need_the_token_and_count_what_happened(
    served: tuple[httpx.AsyncClient, Hub, Monitor], receiver: Receiver
) -> None:
    client, hub, _monitor = served
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
    before = samples((await client.get("/metrics", headers=AUTH)).text)
    await hub.service.create_webhook(receiver.url, [EVENT])
    await hub.publish(EVENT, dict(hub.catalog.get(EVENT).example))
    await receiver.wait_for(1)

    async def delivered() -> dict[Any, float] | None:
        found = samples((await client.get("/metrics", headers=AUTH)).text)
        success = ("webhook_mcp_delivery_attempts_total", (("outcome", "success"),))
        # The queue gauges come from the database, where the result is written just after the
        # attempt is counted: wait for both.
        pending = found.get(("webhook_mcp_deliveries", (("state", "pending"),)))
        return found if found[success] > before[success] and pending == 0 else None

    after = await wait_until(delivered, timeout=5)
    published = ("webhook_mcp_events_published_total", (("type", EVENT),))
    assert after[published] - before.get(published, 0.0) == 1
    assert after[("webhook_mcp_delivery_attempt_duration_seconds_count", ())] >= 1
    assert after[("webhook_mcp_claim_duration_seconds_count", ())] >= 1
    assert after[("webhook_mcp_result_write_duration_seconds_count", ())] >= 1
    assert after[("webhook_mcp_webhooks", (("status", "enabled"),))] == 1
    assert after[("webhook_mcp_deliveries", (("state", "pending"),))] == 0
    assert after[("webhook_mcp_queue_stats_up", ())] == 1


async def test_readiness_fails_with_the_reason(served: tuple[httpx.AsyncClient, Hub, Monitor]) -> None:
    client, hub, monitor = served
    with hub.store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "schema is at revision 0001" in response.json()["problems"][0]
    assert "webhook-mcp migrate" in response.json()["problems"][0]
    with hub.store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    assert (await client.get("/readyz")).status_code == 200
    await hub.stop_dispatcher()
    stopped = await client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["problems"] == ["the dispatcher is not running"]
    monitor.draining = True
    assert (await client.get("/readyz")).json()["problems"][0] == "the process is shutting down"


async def test_queue_gauges_come_from_the_database(database_url: str, receiver: Receiver) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        service = hub.service
        live = await service.create_webhook(receiver.url, [EVENT])
        paused = await service.create_webhook(receiver.url, [EVENT])
        gone = await service.create_webhook(receiver.url, [EVENT])
        for _ in range(3):
            await hub.publish(EVENT, dict(hub.catalog.get(EVENT).example))
        await service.set_enabled(paused.id, False)  # its three deliveries are held
        await hub.store.set_enabled(gone.id, False, "disabled: the endpoint answered 410 Gone", 0.0)
        rows = await hub.store.fetch_all(deliveries.select().where(deliveries.c.webhook_id == live.id))
        with hub.store.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id == rows[0].id).values(state="failed"))
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == rows[1].id)
                .values(lease_owner="elsewhere", next_attempt_at=4e9)
            )
            conn.execute(update(deliveries).where(deliveries.c.id == rows[2].id).values(next_attempt_at=1.0))
        monitor = Monitor(hub, cache_seconds=0)
        app = create_worker_app(hub, monitor, "127.0.0.1", 9100)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9100") as c:
            found = samples((await c.get("/metrics")).text)
            assert (await c.get("/nothing")).status_code == 404
    counts = {key[1][0][1]: value for key, value in found.items() if key[0] in ("webhook_mcp_deliveries",)}
    assert counts == {"pending": 2, "held": 6, "dead": 1}
    assert found[("webhook_mcp_deliveries_leased", ())] == 1
    assert found[("webhook_mcp_oldest_due_delivery_age_seconds", ())] > 1e9  # due since 1970
    hooks = {key[1][0][1]: value for key, value in found.items() if key[0] == "webhook_mcp_webhooks"}
    assert hooks == {"enabled": 1, "disabled": 1, "auto_disabled": 1}
    assert found[("webhook_mcp_deliveries_in_flight", ())] == 0
