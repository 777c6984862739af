"""The skill's four Common Workflows, step by step with the tool names and arguments the spec gives,
through ``mcp.Client`` against ``create_server`` and real receivers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jsonschema
import pytest
import standardwebhooks
import svix.webhooks
from mcp import Client

from conftest import Receiver, make_settings
from conftest import call_tool as call
from webhook_mcp import Hub
from webhook_mcp.interfaces.mcp.server import create_server
from webhook_mcp.service.events import SAMPLE_SECRET

pytestmark = pytest.mark.anyio

ReceiverFactory = Callable[..., Awaitable[Receiver]]


def verify_both(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    """What the merchant's handler does with the secret: verify with either reference library."""
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)
    return payload


@contextlib.asynccontextmanager
async def delivery_worker(hub: Hub) -> AsyncIterator[None]:
    """A separate delivery worker on the same database (``webhook-mcp worker`` beside
    ``serve --no-dispatcher``). Leaving it finishes in-flight deliveries and records them."""
    async with Hub.open(hub.settings, dispatch=True):
        yield


# A shop's own order, as it has it: the built-in schema asks only for its id.
ORDER = {"id": "ord_1", "total": 1999, "currency": "EUR"}


# --- 1. Set Up Order Notification Webhook ---------------------------------------------------------


async def test_set_up_order_notification_webhook(database_url: str, receiver: Receiver) -> None:
    async with Client(create_server(make_settings(database_url))) as client:
        # 1. get_webhook_events() -> List available events
        events = await call(client, "get_webhook_events", {})
        assert "order.created" in [e["name"] for e in events["event_types"]]

        # 2. create_webhook(url="https://...", events=["order.created"]) -> Create
        hook = await call(client, "create_webhook", {"url": receiver.url, "events": ["order.created"]})
        webhook_id = hook["id"]
        assert hook["enabled"] is True and hook["events"] == ["order.created"]

        # 3. get_webhook_secret(id) -> Save secret for verification
        secret = (await call(client, "get_webhook_secret", {"id": webhook_id}))["secret"]
        assert secret.startswith("whsec_")

        # 4. test_webhook(id) -> Verify delivery works
        test = await call(client, "test_webhook", {"id": webhook_id})
        assert test["success"] is True and test["status_code"] == 200 and test["error"] is None
        (received,) = receiver.requests
        payload = verify_both(secret, received.body, received.headers)
        assert payload["type"] == "webhook.test" and payload["id"] == test["event_id"]

        # 5. get_webhook_logs(id) -> Confirm test was received
        logs = await call(client, "get_webhook_logs", {"id": webhook_id})
        (entry,) = logs["attempts"]
        assert entry["is_test"] is True and entry["success"] is True and entry["status_code"] == 200
        assert (
            entry["event_id"] == test["event_id"] == {k.lower(): v for k, v in received.headers.items()}["webhook-id"]
        )
        assert entry["response_excerpt"] == "received"

        # And then the real thing: an order arrives, signed with the same secret.
        published = await call(client, "send_event", {"event": "order.created", "data": ORDER})
        assert published["queued"] == 1
        requests = await receiver.wait_for(2)
        order = verify_both(secret, requests[1].body, requests[1].headers)
        assert order == {
            "id": published["event_id"],
            "type": "order.created",
            "timestamp": order["timestamp"],
            "data": ORDER,
        }


# --- 2. Debug Failing Webhook ---------------------------------------------------------------------


async def test_debug_failing_webhook(hub: Hub, receiver_factory: ReceiverFactory) -> None:
    broken = await receiver_factory(statuses=[500])
    healthy = await receiver_factory()
    bystander = await receiver_factory()
    async with Client(create_server(hub=hub)) as client:
        await call(client, "create_webhook", {"url": bystander.url, "events": ["payment.completed"]})
        created = await call(client, "create_webhook", {"url": broken.url, "events": ["order.created"]})
        secret = (await call(client, "get_webhook_secret", {"id": created["id"]}))["secret"]
        # An order is published; the endpoint answers 500 to every attempt of the retry schedule.
        published = await call(client, "send_event", {"event": "order.created", "data": ORDER})
        assert published["queued"] == 1
        async with delivery_worker(hub):
            await broken.wait_for(3)

        # 1. list_webhooks() -> Find the webhook
        listed = await call(client, "list_webhooks", {})
        (hook,) = [w for w in listed["webhooks"] if w["url"] == broken.url]
        webhook_id = hook["id"]
        assert webhook_id == created["id"]
        assert hook["consecutive_failures"] == 3 and hook["last_failure_at"] is not None
        assert hook["last_success_at"] is None

        # 2. get_webhook_stats(id) -> Check success/failure rates
        stats = await call(client, "get_webhook_stats", {"id": webhook_id})
        assert (stats["total_attempts"], stats["succeeded"], stats["failed"]) == (3, 0, 3)
        assert stats["success_rate"] == 0.0
        assert stats["failed_deliveries"] == 1 and stats["pending_deliveries"] == 0
        assert stats["consecutive_failures"] == 3

        # 3. get_webhook_logs(id) -> Find failed deliveries and error codes
        logs = await call(client, "get_webhook_logs", {"id": webhook_id})
        assert [a["status_code"] for a in logs["attempts"]] == [500, 500, 500]
        assert [a["attempt_number"] for a in logs["attempts"]] == [3, 2, 1]
        assert all(not a["success"] and "HTTP 500" in a["error"] for a in logs["attempts"])
        assert {a["event_id"] for a in logs["attempts"]} == {published["event_id"]}

        # 4. test_webhook(id) -> Test with fresh request
        fresh = await call(client, "test_webhook", {"id": webhook_id})
        assert fresh["success"] is False and fresh["status_code"] == 500 and "500" in fresh["error"]
        assert len(broken.requests) == 4

        # 5. If URL changed: update_webhook(id, url="https://new-url.com")
        updated = await call(client, "update_webhook", {"id": webhook_id, "url": healthy.url})
        assert updated["url"] == healthy.url and updated["events"] == ["order.created"]
        retest = await call(client, "test_webhook", {"id": webhook_id})
        assert retest["success"] is True and retest["status_code"] == 200
        (received,) = healthy.requests
        assert verify_both(secret, received.body, received.headers)["id"] == retest["event_id"]

        # The dead order can now be replayed to the fixed endpoint.
        replay = await call(client, "replay_failed", {"id": webhook_id})
        assert replay["requeued"] == 1 and replay["held"] is False
        async with delivery_worker(hub):
            await healthy.wait_for(2)
        replayed = verify_both(secret, healthy.requests[1].body, healthy.requests[1].headers)
        assert replayed["id"] == published["event_id"] and replayed["data"] == ORDER
        stats = await call(client, "get_webhook_stats", {"id": webhook_id})
        assert (stats["failed_deliveries"], stats["succeeded_deliveries"]) == (0, 1)
        assert stats["consecutive_failures"] == 0
        assert (await call(client, "get_webhook", {"id": webhook_id}))["consecutive_failures"] == 0
    assert len(broken.requests) == 4
    assert bystander.requests == []


# --- 3. Temporarily Disable Webhook ---------------------------------------------------------------


async def test_temporarily_disable_webhook(database_url: str, receiver: Receiver) -> None:
    async with Client(create_server(make_settings(database_url))) as client:
        hook = await call(client, "create_webhook", {"url": receiver.url, "events": ["order.created"]})
        webhook_id = hook["id"]

        # 1. toggle_webhook(id) -> Disable
        disabled = await call(client, "toggle_webhook", {"id": webhook_id})
        assert disabled["enabled"] is False and disabled["disabled_reason"]

        # 2. ... (do maintenance) ... meanwhile the shop publishes an order: nothing is queued for it.
        published = await call(client, "send_event", {"event": "order.created", "data": ORDER})
        assert published["queued"] == 0
        stats = await call(client, "get_webhook_stats", {"id": webhook_id})
        assert (stats["pending_deliveries"], stats["held_deliveries"]) == (0, 0)

        # 3. toggle_webhook(id) -> Re-enable
        enabled = await call(client, "toggle_webhook", {"id": webhook_id})
        assert enabled["enabled"] is True and enabled["disabled_reason"] is None

        # 4. test_webhook(id) -> Verify it's working again
        test = await call(client, "test_webhook", {"id": webhook_id})
        assert test["success"] is True and test["webhook_enabled"] is True
        assert [r.json["type"] for r in receiver.requests] == ["webhook.test"]

        # New events flow again.
        again = await call(client, "send_event", {"event": "order.created", "data": ORDER})
        assert again["queued"] == 1
        requests = await receiver.wait_for(2)
        assert requests[1].json["id"] == again["event_id"]
    assert published["event_id"] not in [r.json["id"] for r in receiver.requests]


async def test_delivery_pending_before_disable_is_held_until_re_enabled(
    hub: Hub, receiver_factory: ReceiverFactory
) -> None:
    paused = await receiver_factory()
    running = await receiver_factory()
    async with Client(create_server(hub=hub)) as client:
        target = await call(client, "create_webhook", {"url": paused.url, "events": ["order.created"]})
        control = await call(client, "create_webhook", {"url": running.url, "events": ["order.created"]})
        # Published while nothing delivers: one pending delivery per webhook.
        published = await call(client, "send_event", {"event": "order.created", "data": ORDER})
        assert published["queued"] == 2
        assert (await call(client, "get_webhook_stats", {"id": target["id"]}))["pending_deliveries"] == 1

        # 1. toggle_webhook(id) -> Disable: its pending delivery is held.
        assert (await call(client, "toggle_webhook", {"id": target["id"]}))["enabled"] is False
        stats = await call(client, "get_webhook_stats", {"id": target["id"]})
        assert (stats["pending_deliveries"], stats["held_deliveries"]) == (0, 1)

        async with delivery_worker(hub):
            # The worker claims due deliveries in one query; once the control webhook's copy of the
            # same event has arrived, the held one was not claimable and was not delivered.
            (control_request,) = await running.wait_for(1)
            assert control_request.json["id"] == published["event_id"]
            assert paused.requests == []
            held = await call(client, "get_webhook_stats", {"id": target["id"]})
            assert (held["held_deliveries"], held["pending_deliveries"], held["total_attempts"]) == (1, 0, 0)

            # 3. toggle_webhook(id) -> Re-enable: the held delivery resumes.
            assert (await call(client, "toggle_webhook", {"id": target["id"]}))["enabled"] is True
            (resumed,) = await paused.wait_for(1)
        assert resumed.json["id"] == published["event_id"] and resumed.json["data"] == ORDER
        stats = await call(client, "get_webhook_stats", {"id": target["id"]})
        assert (stats["held_deliveries"], stats["pending_deliveries"], stats["succeeded_deliveries"]) == (0, 0, 1)
        control_stats = await call(client, "get_webhook_stats", {"id": control["id"]})
        assert control_stats["succeeded_deliveries"] == 1

        # 4. test_webhook(id) -> Verify it's working again
        test = await call(client, "test_webhook", {"id": target["id"]})
        assert test["success"] is True
    assert [r.json["type"] for r in paused.requests] == ["order.created", "webhook.test"]
    assert len(running.requests) == 1


# --- 4. Preview Webhook Payloads ------------------------------------------------------------------


async def test_preview_webhook_payloads(hub: Hub, receiver: Receiver) -> None:
    async with Client(create_server(hub=hub)) as client:
        # 1. get_webhook_events() -> List events
        names = [e["name"] for e in (await call(client, "get_webhook_events", {}))["event_types"]]
        assert {"order.created", "payment.completed"} <= set(names)

        # 2. get_webhook_sample_payload(event="order.created") -> See payload format
        # 3. get_webhook_sample_payload(event="payment.completed") -> See another
        samples = {}
        for event in ("order.created", "payment.completed"):
            sample = await call(client, "get_webhook_sample_payload", {"event": event})
            body = sample["body"]
            assert sample["event"] == event
            assert list(body) == ["id", "type", "timestamp", "data"]
            assert body["type"] == event and body["id"].startswith("evt_") and body["timestamp"].endswith("Z")
            assert body["data"] == hub.catalog.get(event).example
            jsonschema.Draft202012Validator(sample["data_schema"]).validate(body["data"])
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            assert verify_both(SAMPLE_SECRET, raw, sample["headers"]) == body
            samples[event] = sample
        order, payment = samples["order.created"]["body"]["data"], samples["payment.completed"]["body"]["data"]
        assert order["id"].startswith("ord_") and order["line_items"]
        assert payment["id"].startswith("pay_") and payment["order_id"].startswith("ord_")
        assert samples["order.created"]["data_schema"] != samples["payment.completed"]["data_schema"]

        # A handler built from the preview understands the real delivery: same envelope, same data.
        hook = await call(client, "create_webhook", {"url": receiver.url, "events": ["order.created"]})
        await call(client, "test_webhook", {"id": hook["id"], "event": "order.created"})
        (received,) = receiver.requests
        assert list(received.json) == list(samples["order.created"]["body"])
        assert received.json["data"] == order
        assert {k.lower() for k in received.headers} >= set(samples["order.created"]["headers"])
