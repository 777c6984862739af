"""The MCP face of the service, driven exactly as an assistant would: through ``mcp.Client`` against
``create_server``, with real SQLite files and real receivers on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import jsonschema
import mcp_types
import pytest
import standardwebhooks
import svix.webhooks
from aiohttp import web
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Tool, ToolAnnotations
from pydantic import BaseModel

from conftest import Receiver, make_settings, text_of
from webhook_mcp import Hub, load_catalog
from webhook_mcp.core import models
from webhook_mcp.interfaces.mcp.server import SENSITIVE, create_server
from webhook_mcp.service.events import SAMPLE_SECRET
from webhook_mcp.storage.records import AttemptRecord

pytestmark = pytest.mark.anyio

CONTRACT_TOOLS = {
    "list_webhooks",
    "get_webhook_events",
    "get_webhook",
    "create_webhook",
    "update_webhook",
    "delete_webhook",
    "test_webhook",
    "get_webhook_sample_payload",
    "get_webhook_logs",
    "get_webhook_secret",
    "get_webhook_stats",
    "toggle_webhook",
}
EXTRA_TOOLS = {"retry_delivery", "replay_failed", "send_event", "rotate_webhook_secret", "open_inbox", "read_inbox"}
READ_TOOLS = {
    "read_inbox",
    "list_webhooks",
    "get_webhook_events",
    "get_webhook",
    "get_webhook_sample_payload",
    "get_webhook_logs",
    "get_webhook_secret",
    "get_webhook_stats",
}
# Tools the contract calls with {"id": 1}.
ID_TOOLS = {
    "get_webhook",
    "update_webhook",
    "delete_webhook",
    "toggle_webhook",
    "test_webhook",
    "get_webhook_logs",
    "get_webhook_secret",
    "get_webhook_stats",
}
HEADER_NAMES = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent"}
PUBLIC_URL = "https://hooks.example.com/webhooks/teleshop"


# --- helpers --------------------------------------------------------------------------------------


async def call(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, f"{name}({arguments}) failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict), f"{name} returned no structured content"
    # The text block carries the same JSON, for clients that ignore structured content.
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


async def call_error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    """Call a tool that must fail as a tool error (not a protocol error); return its text."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, f"{name}({arguments}) unexpectedly succeeded: {result.structured_content}"
    text = text_of(result)
    assert text.strip(), "error without text"
    assert "Traceback" not in text and 'File "' not in text, text
    return text


async def create(client: Client, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return await call(client, "create_webhook", {"url": url, "events": events or ["order.created"], **extra})


@contextlib.asynccontextmanager
async def delivery_worker(hub: Hub) -> AsyncIterator[Hub]:
    """A separate dispatching hub on the same database, like ``webhook-mcp worker`` beside
    ``serve --no-dispatcher``. Leaving it finishes in-flight deliveries and writes their results,
    so what the receiver saw is in the logs afterwards without any waiting."""
    async with Hub.open(hub.settings, dispatch=True) as worker:
        yield worker


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[Client]:
    """A client of a server whose hub has no dispatcher: every delivery happens on request."""
    async with Client(create_server(hub=hub)) as connected:
        yield connected


@pytest.fixture
async def post_receiver() -> AsyncIterator[Receiver]:
    """Like ``receiver`` but routes POST only: anything else gets 405 and is not recorded."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks"
    try:
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhooks"


def verify_both(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    """Verify a delivery with both reference libraries; return the payload."""
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)
    return payload


# --- the tool list --------------------------------------------------------------------------------


async def test_list_tools_contract_descriptions_schemas_and_annotations(client: Client) -> None:
    listed = (await client.list_tools()).tools
    tools: dict[str, Tool] = {tool.name: tool for tool in listed}
    assert len(listed) == len(tools) == 18
    assert set(tools) == CONTRACT_TOOLS | EXTRA_TOOLS

    for name, tool in tools.items():
        assert tool.description and len(tool.description) >= 80, name
        assert tool.output_schema is not None, f"{name} has no output schema"
        assert tool.output_schema.get("type") == "object" and tool.output_schema.get("properties"), name
        assert tool.annotations is not None, name
        if name in READ_TOOLS:
            assert tool.annotations.read_only_hint is True, name
            assert tool.annotations.open_world_hint is False, name
        else:
            # Left out: a tool without read_only_hint is a write (the protocol's default).
            assert tool.annotations.read_only_hint is not True, name

    assert tools["delete_webhook"].annotations.destructive_hint is True  # type: ignore[union-attr]
    for name in ("toggle_webhook", "update_webhook", "create_webhook"):
        assert tools[name].annotations.destructive_hint is not True, name  # type: ignore[union-attr]
    assert tools["test_webhook"].annotations.open_world_hint is True  # type: ignore[union-attr]
    assert tools["send_event"].annotations.open_world_hint is True  # type: ignore[union-attr]

    for name in ID_TOOLS | {"replay_failed", "retry_delivery", "rotate_webhook_secret"}:
        schema = tools[name].input_schema
        assert schema["properties"]["id"]["type"] == "integer", name
        assert "id" in schema.get("required", []), name
    create_schema = tools["create_webhook"].input_schema
    assert set(create_schema["required"]) == {"url", "events"}
    assert create_schema["properties"]["url"]["type"] == "string"
    assert create_schema["properties"]["events"]["type"] == "array"
    assert create_schema["properties"]["events"]["items"]["type"] == "string"
    assert tools["get_webhook_sample_payload"].input_schema["required"] == ["event"]
    assert tools["send_event"].input_schema["required"] == ["event", "data"]
    assert not tools["list_webhooks"].input_schema.get("required")
    assert not tools["get_webhook_events"].input_schema.get("required")
    assert tools["get_webhook_logs"].input_schema["properties"]["status"]["enum"] == [
        "all",
        "success",
        "failed",
        "test",
    ]


# --- the contract's exact input shapes ------------------------------------------------------------


async def test_contract_input_shapes_return_structured_models(client: Client) -> None:
    schemas = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}

    def check(name: str, content: dict[str, Any], model: type[BaseModel]) -> Any:
        jsonschema.validate(content, schemas[name])
        return model.model_validate(content)

    events = check("get_webhook_events", await call(client, "get_webhook_events", {}), models.EventTypeList)
    names = [e.name for e in events.event_types]
    assert events.total == len(names) >= 10
    assert {"order.created", "order.updated", "payment.completed"} <= set(names)
    assert "webhook.test" not in names  # not subscribable, so not listed

    created = check(
        "create_webhook",
        await call(client, "create_webhook", {"url": PUBLIC_URL, "events": ["order.created", "order.updated"]}),
        models.Webhook,
    )
    assert created.id == 1
    assert (created.url, created.events, created.enabled) == (PUBLIC_URL, ["order.created", "order.updated"], True)
    assert created.consecutive_failures == 0 and created.disabled_reason is None

    listed = check("list_webhooks", await call(client, "list_webhooks", {}), models.WebhookList)
    assert listed.total == 1 and [w.id for w in listed.webhooks] == [1]

    got = check("get_webhook", await call(client, "get_webhook", {"id": 1}), models.Webhook)
    assert got == created

    updated = check(
        "update_webhook",
        await call(
            client,
            "update_webhook",
            {
                "id": 1,
                "url": "https://new-server.com/webhooks",
                "events": ["order.created", "order.updated", "payment.completed"],
            },
        ),
        models.Webhook,
    )
    assert updated.url == "https://new-server.com/webhooks"
    assert updated.events == ["order.created", "order.updated", "payment.completed"]

    toggled = check("toggle_webhook", await call(client, "toggle_webhook", {"id": 1}), models.Webhook)
    assert toggled.enabled is False

    sample = check(
        "get_webhook_sample_payload",
        await call(client, "get_webhook_sample_payload", {"event": "order.created"}),
        models.SamplePayload,
    )
    assert sample.event == "order.created" and sample.body["type"] == "order.created"

    logs = check("get_webhook_logs", await call(client, "get_webhook_logs", {"id": 1}), models.AttemptPage)
    assert logs.webhook_id == 1 and logs.attempts == [] and logs.next_cursor is None

    stats = check("get_webhook_stats", await call(client, "get_webhook_stats", {"id": 1}), models.WebhookStats)
    assert stats.total_attempts == 0 and stats.success_rate is None and stats.window_hours is None

    secret = check("get_webhook_secret", await call(client, "get_webhook_secret", {"id": 1}), models.WebhookSecret)
    assert secret.id == 1 and secret.secret.startswith("whsec_")

    deleted = check("delete_webhook", await call(client, "delete_webhook", {"id": 1}), models.DeletedWebhook)
    assert deleted.deleted is True and deleted.id == 1 and deleted.url == "https://new-server.com/webhooks"
    assert (await call(client, "list_webhooks", {}))["total"] == 0


# --- bad input ------------------------------------------------------------------------------------

LONG_URL = "https://example.com/" + "a" * 2040  # 2060 characters
CUSTOMER = load_catalog().get("customer.created").example

BAD_INPUTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("get_webhook", {"id": 42}, ["no webhook with id 42", "list_webhooks"]),
    ("create_webhook", {"url": "ftp://x", "events": ["order.created"]}, ["ftp://x", "http"]),
    ("create_webhook", {"url": "/webhooks/teleshop", "events": ["order.created"]}, ["absolute", "http"]),
    ("create_webhook", {"url": "", "events": ["order.created"]}, ["url is empty"]),
    ("create_webhook", {"url": PUBLIC_URL, "events": ["order.create"]}, ["order.create", "order.created"]),
    ("create_webhook", {"url": PUBLIC_URL, "events": []}, ["events is empty", "get_webhook_events"]),
    (
        "create_webhook",
        {"url": PUBLIC_URL, "events": ["order.created", "order.created"]},
        ["order.created", "more than once"],
    ),
    ("create_webhook", {"url": LONG_URL, "events": ["order.created"]}, ["2060", "2048"]),
    ("create_webhook", {"url": PUBLIC_URL, "events": ["order.created"], "description": "d" * 501}, ["501", "500"]),
    ("create_webhook", {"url": PUBLIC_URL, "events": ["webhook.test"]}, ["webhook.test", "cannot be subscribed"]),
    ("create_webhook", {"url": "https://user:pw@example.com/x", "events": ["order.created"]}, ["password"]),
    ("create_webhook", {"url": PUBLIC_URL}, ["events", "required"]),
    ("update_webhook", {"id": 1}, ["nothing to update"]),
    ("update_webhook", {"id": 1, "events": ["payment.complete"]}, ["payment.completed"]),
    ("update_webhook", {"id": 1, "url": "mailto:ops@example.com"}, ["http"]),
    ("get_webhook_logs", {"id": 1, "limit": 0}, ["limit", "between 1 and 100", "0"]),
    ("get_webhook_logs", {"id": 1, "limit": 101}, ["limit", "between 1 and 100", "101"]),
    ("get_webhook_logs", {"id": 1, "cursor": "abc"}, ["cursor", "abc", "next_cursor"]),
    ("get_webhook_logs", {"id": 1, "status": "broken"}, ["status"]),
    ("get_webhook", {"id": "abc"}, ["id", "whole number"]),
    ("toggle_webhook", {}, ["id", "required"]),
    ("get_webhook_sample_payload", {"event": "order.create"}, ["order.create", "order.created"]),
    ("get_webhook_sample_payload", {}, ["event", "required"]),
    ("test_webhook", {"id": 1, "event": "order.creatd"}, ["order.created"]),
    ("get_webhook_stats", {"id": 1, "window_hours": 0}, ["window_hours"]),
    ("replay_failed", {"id": 1, "since_hours": -1}, ["since_hours"]),
    ("rotate_webhook_secret", {"id": 1, "grace_hours": -1}, ["grace_hours", "between 0", "720", "-1"]),
    ("rotate_webhook_secret", {"id": 1, "grace_hours": 721}, ["grace_hours", "720", "721"]),
    ("rotate_webhook_secret", {"id": 1, "grace_hours": "soon"}, ["grace_hours"]),
    ("retry_delivery", {"id": 77}, ["no delivery with id 77", "get_webhook_logs"]),
    ("send_event", {"event": "order.creatd", "data": {}}, ["order.created"]),
    ("send_event", {"event": "webhook.test", "data": {}}, ["webhook.test", "cannot be subscribed"]),
    # Text no database stores (PostgreSQL refuses NUL) or no UTF-8 encoder writes.
    ("create_webhook", {"url": PUBLIC_URL, "events": ["order.created"], "description": "a\ud800"}, ["description"]),
    (
        "create_webhook",
        {"url": PUBLIC_URL, "events": ["order.created"], "description": "a\x00b"},
        ["description", "NUL"],
    ),
    ("create_webhook", {"url": PUBLIC_URL + "/\x00", "events": ["order.created"]}, ["url", "NUL"]),
    ("update_webhook", {"id": 1, "url": PUBLIC_URL + "/\udfff"}, ["url", "surrogate"]),
    ("send_event", {"event": "customer.created", "data": {**CUSTOMER, "id": "cus_\ud800"}}, ["data", "surrogate"]),
    ("send_event", {"event": "customer.created", "data": {**CUSTOMER, "first_name": "\ud800"}}, ["data", "surrogate"]),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    BAD_INPUTS,
    ids=[f"{tool}-{i}" for i, (tool, _, _) in enumerate(BAD_INPUTS)],
)
async def test_bad_input_is_a_helpful_tool_error(
    client: Client, tool: str, arguments: dict[str, Any], expected: list[str]
) -> None:
    await create(client, PUBLIC_URL)  # id 1 exists, so only the argument under test is wrong
    text = await call_error(client, tool, arguments)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    # Nothing was created or changed by a rejected call.
    webhooks = (await call(client, "list_webhooks"))["webhooks"]
    assert [(w["id"], w["url"], w["events"], w["enabled"]) for w in webhooks] == [
        (1, PUBLIC_URL, ["order.created"], True)
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('"extra": NaN', "data.extra: NaN is not JSON"),
        ('"lines": [0, -Infinity]', "data.lines[1]: -Infinity is not JSON"),
    ],
)
async def test_send_event_refuses_non_standard_json_numbers_from_the_wire(hub: Hub, extra: str, message: str) -> None:
    """The SDK's JSON-RPC parser reads a bare NaN (a lax client writes one): the tool refuses it, naming
    its path, and nothing is stored. (``mcp.Client`` itself turns NaN into null, so the raw message
    is parsed here as every MCP transport parses it.)"""
    created = await hub.service.create_webhook(PUBLIC_URL, ["order.created"])
    data = json.dumps(hub.catalog.get("order.created").example)[:-1] + f", {extra}}}"
    raw = (
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send_event", '
        f'"arguments": {{"event": "order.created", "data": {data}}}}}}}'
    )
    request = mcp_types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
    assert isinstance(request, mcp_types.JSONRPCRequest) and request.params is not None
    server = create_server(hub=hub)
    async with Client(server):  # running, as a transport finds it
        with pytest.raises(ToolError) as info:
            await server.call_tool("send_event", request.params["arguments"])
    assert message in str(info.value) and "send a number or null" in str(info.value)
    assert (await hub.service.get_stats(created.id)).pending_deliveries == 0


@pytest.mark.parametrize("tool", [*sorted(ID_TOOLS - {"update_webhook"}), "replay_failed", "rotate_webhook_secret"])
async def test_unknown_id_for_every_webhook_tool(client: Client, tool: str) -> None:
    text = await call_error(client, tool, {"id": 42})
    assert "no webhook with id 42" in text and "list_webhooks" in text


async def test_unknown_id_for_update(client: Client) -> None:
    text = await call_error(client, "update_webhook", {"id": 42, "description": "x"})
    assert "no webhook with id 42" in text and "list_webhooks" in text


async def test_limits_are_inclusive(client: Client) -> None:
    exact_url = "https://example.com/" + "u" * (2048 - len("https://example.com/"))
    hook = await create(client, exact_url, description="d" * 500)
    assert len(hook["url"]) == 2048 and len(hook["description"]) == 500
    for limit in (1, 100):
        assert (await call(client, "get_webhook_logs", {"id": hook["id"], "limit": limit}))["attempts"] == []


async def test_malformed_ipv6_url_is_a_helpful_error(client: Client) -> None:
    text = await call_error(client, "create_webhook", {"url": "http://[::1/x", "events": ["order.created"]})
    assert "url" in text and "[::1" in text


async def test_url_with_whitespace_in_host_is_rejected(client: Client) -> None:
    text = await call_error(client, "create_webhook", {"url": "http://exa mple.com/x", "events": ["order.created"]})
    assert "url" in text


async def test_unicode_digit_cursor_is_a_helpful_error(client: Client) -> None:
    hook = await create(client, PUBLIC_URL)
    text = await call_error(client, "get_webhook_logs", {"id": hook["id"], "cursor": "²"})
    assert "cursor" in text and "next_cursor" in text


async def test_huge_cursor_is_a_helpful_error(client: Client) -> None:
    hook = await create(client, PUBLIC_URL)
    text = await call_error(client, "get_webhook_logs", {"id": hook["id"], "cursor": "9" * 30})
    assert "cursor" in text


async def test_out_of_range_id_is_a_helpful_error(client: Client) -> None:
    text = await call_error(client, "get_webhook", {"id": 10**20})
    assert "no webhook with id" in text or "id" in text.split(":", 1)[-1]


# --- secrets --------------------------------------------------------------------------------------


async def test_secret_is_masked_everywhere_but_get_webhook_secret(client: Client) -> None:
    created_result = await client.call_tool("create_webhook", {"url": PUBLIC_URL, "events": ["order.created"]})
    hook = created_result.structured_content
    assert hook is not None
    secret_info = await call(client, "get_webhook_secret", {"id": hook["id"]})
    secret = secret_info["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert "verify" in secret_info["how_to_verify"] and "webhook-signature" in secret_info["how_to_verify"]

    outputs = [created_result]
    for name, arguments in [
        ("get_webhook", {"id": hook["id"]}),
        ("list_webhooks", {}),
        ("update_webhook", {"id": hook["id"], "description": "orders"}),
        ("toggle_webhook", {"id": hook["id"]}),
    ]:
        outputs.append(await client.call_tool(name, arguments))
    for result in outputs:
        assert not result.is_error
        assert secret not in text_of(result)
        assert secret not in json.dumps(result.structured_content, ensure_ascii=False)
        assert secret.removeprefix("whsec_") not in text_of(result)

    got = await call(client, "get_webhook", {"id": hook["id"]})
    assert got["secret_hint"].endswith(secret[-4:])
    assert len(got["secret_hint"]) < 16
    assert (await call(client, "list_webhooks"))["webhooks"][0]["secret_hint"] == got["secret_hint"]

    # Each webhook has its own secret, and reading it twice gives the same one.
    other = await create(client, PUBLIC_URL + "/2")
    assert (await call(client, "get_webhook_secret", {"id": other["id"]}))["secret"] != secret
    assert (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"] == secret


async def test_rotate_webhook_secret_signs_with_both_until_the_grace_ends(
    client: Client, post_receiver: Receiver
) -> None:
    hook = await create(client, post_receiver.url)
    old = (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"]
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert tools["rotate_webhook_secret"].input_schema["required"] == ["id"]

    rotated = await call(client, "rotate_webhook_secret", {"id": hook["id"]})
    jsonschema.validate(rotated, tools["rotate_webhook_secret"].output_schema)
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated["grace_hours"] == 24 and rotated["dropped_older_secret"] is False
    ends = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert abs(ends.timestamp() - (time.time() + 24 * 3600)) < 60
    assert "test_webhook" in rotated["next_steps"]

    shown = await call(client, "get_webhook_secret", {"id": hook["id"]})
    assert shown["secret"] == new and shown["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    assert old not in json.dumps(shown)
    got = await call(client, "get_webhook", {"id": hook["id"]})
    assert got["secret_hint"].endswith(new[-4:])
    assert got["secret_rotation_ends_at"] == rotated["previous_secret_expires_at"]
    for result in (got, await call(client, "list_webhooks")):
        assert new not in json.dumps(result) and old not in json.dumps(result)

    tested = await call(client, "test_webhook", {"id": hook["id"]})
    (request,) = post_receiver.requests
    assert verify_both(new, request.body, request.headers)["id"] == tested["event_id"]
    assert verify_both(old, request.body, request.headers)["id"] == tested["event_id"]

    # grace_hours 0: only the newest secret signs from now on.
    switched = await call(client, "rotate_webhook_secret", {"id": hook["id"], "grace_hours": 0})
    assert switched["previous_secret_expires_at"] is None and switched["dropped_older_secret"] is True
    await call(client, "test_webhook", {"id": hook["id"]})
    last = post_receiver.requests[1]
    assert verify_both(switched["secret"], last.body, last.headers)
    for stale in (old, new):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(stale).verify(last.body, last.headers)
    assert (await call(client, "get_webhook", {"id": hook["id"]}))["secret_rotation_ends_at"] is None


# --- sample payloads ------------------------------------------------------------------------------


async def test_sample_payloads_have_the_envelope_and_verifiable_signatures(client: Client, hub: Hub) -> None:
    names = [e["name"] for e in (await call(client, "get_webhook_events"))["event_types"]]
    for name in names:
        sample = await call(client, "get_webhook_sample_payload", {"event": name})
        body, headers = sample["body"], sample["headers"]
        assert sample["event"] == name and sample["description"]
        assert list(body) == ["id", "type", "timestamp", "data"]
        assert body["type"] == name
        assert body["timestamp"].endswith("Z")
        assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None
        assert body["data"] == hub.catalog.get(name).example
        assert sample["data_schema"] is not None
        jsonschema.Draft202012Validator(sample["data_schema"]).validate(body["data"])

        assert set(headers) == HEADER_NAMES
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("webhook-mcp/")
        assert headers["webhook-id"] == body["id"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
        assert headers["webhook-signature"].startswith("v1,")

        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        assert verify_both(SAMPLE_SECRET, raw, headers) == body
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SAMPLE_SECRET).verify(raw.replace(b'"data":', b'"data" :'), headers)


# --- test_webhook ---------------------------------------------------------------------------------


async def test_test_webhook_delivers_a_signed_post(client: Client, post_receiver: Receiver) -> None:
    hook = await create(client, post_receiver.url)
    secret = (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"]

    result = await call(client, "test_webhook", {"id": hook["id"]})
    assert result["success"] is True
    assert result["status_code"] == 200
    assert result["response_ms"] > 0
    assert result["response_excerpt"] == "received"
    assert result["error"] is None
    assert result["event"] == "webhook.test"
    assert result["url"] == post_receiver.url
    assert result["webhook_enabled"] is True

    (request,) = post_receiver.requests  # already there: test_webhook waits for the answer
    assert request.path == "/webhooks"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("webhook-mcp/")
    assert headers["webhook-id"] == result["event_id"]
    payload = verify_both(secret, request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["id"] == result["event_id"]
    assert payload["data"]["webhook_id"] == hook["id"]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SAMPLE_SECRET).verify(request.body, request.headers)

    logs = await call(client, "get_webhook_logs", {"id": hook["id"]})
    (entry,) = logs["attempts"]
    assert entry["is_test"] is True
    assert entry["attempt_id"] == result["attempt_id"]
    assert entry["event_id"] == result["event_id"]
    assert entry["event_type"] == "webhook.test"
    assert entry["delivery_id"] is None
    assert (entry["status_code"], entry["success"], entry["response_excerpt"]) == (200, True, "received")
    assert entry["response_ms"] == result["response_ms"]


async def test_test_webhook_with_an_event_sends_its_sample(client: Client, hub: Hub, receiver: Receiver) -> None:
    hook = await create(client, receiver.url)
    result = await call(client, "test_webhook", {"id": hook["id"], "event": "order.created"})
    assert result["success"] is True and result["event"] == "order.created"
    (request,) = receiver.requests
    assert request.json["type"] == "order.created"
    assert request.json["data"] == hub.catalog.get("order.created").example
    (entry,) = (await call(client, "get_webhook_logs", {"id": hook["id"]}))["attempts"]
    assert entry["event_type"] == "order.created" and entry["is_test"] is True


async def test_test_webhook_reports_http_500(
    client: Client, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    failing = await receiver_factory(statuses=[500])
    hook = await create(client, failing.url)
    result = await call(client, "test_webhook", {"id": hook["id"]})
    assert result["success"] is False
    assert result["status_code"] == 500
    assert "500" in result["error"]
    assert len(failing.requests) == 1
    (entry,) = (await call(client, "get_webhook_logs", {"id": hook["id"]}))["attempts"]
    assert (entry["success"], entry["status_code"], entry["is_test"]) == (False, 500, True)
    assert "500" in entry["error"]


async def test_test_webhook_reports_connection_refused(client: Client) -> None:
    hook = await create(client, closed_port_url())
    result = await call(client, "test_webhook", {"id": hook["id"]})
    assert result["success"] is False
    assert result["status_code"] is None
    assert "refused" in result["error"].lower()
    (entry,) = (await call(client, "get_webhook_logs", {"id": hook["id"]}))["attempts"]
    assert "refused" in entry["error"].lower()


async def test_test_webhook_on_a_disabled_webhook_still_sends(client: Client, receiver: Receiver) -> None:
    hook = await create(client, receiver.url)
    assert (await call(client, "toggle_webhook", {"id": hook["id"]}))["enabled"] is False
    result = await call(client, "test_webhook", {"id": hook["id"]})
    assert result["success"] is True
    assert result["webhook_enabled"] is False
    assert len(receiver.requests) == 1
    # Testing does not re-enable it.
    assert (await call(client, "get_webhook", {"id": hook["id"]}))["enabled"] is False


async def test_loopback_is_blocked_unless_allowed(database_url: str, receiver: Receiver) -> None:
    blocked = "blocked: 127.0.0.1 is a loopback address; allow it with WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
    async with Client(create_server(make_settings(database_url))) as client:
        hook = await create(client, receiver.url)
    # The operator closes loopback again: creating is refused, and so is delivering to the webhook.
    async with Client(create_server(make_settings(database_url, allowed_private_networks=[]))) as client:
        assert blocked in await call_error(client, "create_webhook", {"url": receiver.url, "events": ["order.created"]})
        result = await call(client, "test_webhook", {"id": hook["id"]})
        assert result["success"] is False
        assert result["status_code"] is None
        assert result["error"] == blocked
        (entry,) = (await call(client, "get_webhook_logs", {"id": hook["id"]}))["attempts"]
        assert entry["error"] == blocked
    assert receiver.requests == []


# --- toggle, update, delete -----------------------------------------------------------------------


async def test_toggle_flips_and_flips_back(client: Client) -> None:
    hook = await create(client, PUBLIC_URL)
    off = await call(client, "toggle_webhook", {"id": hook["id"]})
    assert off["enabled"] is False
    assert off["disabled_reason"] and off["disabled_at"] is not None
    assert (await call(client, "get_webhook", {"id": hook["id"]}))["enabled"] is False
    assert (await call(client, "list_webhooks"))["webhooks"][0]["enabled"] is False
    on = await call(client, "toggle_webhook", {"id": hook["id"]})
    assert on["enabled"] is True
    assert on["disabled_reason"] is None and on["disabled_at"] is None
    assert (await call(client, "get_webhook", {"id": hook["id"]}))["enabled"] is True


async def test_update_changes_fields_keeps_the_rest_and_the_secret(client: Client) -> None:
    hook = await create(client, PUBLIC_URL, ["order.created"], description="first")
    secret = (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"]

    moved = await call(client, "update_webhook", {"id": hook["id"], "url": "https://moved.example.com/hook"})
    assert (moved["url"], moved["events"], moved["description"]) == (
        "https://moved.example.com/hook",
        ["order.created"],
        "first",
    )
    evented = await call(client, "update_webhook", {"id": hook["id"], "events": ["payment.completed", "order.paid"]})
    assert evented["events"] == ["payment.completed", "order.paid"]
    assert evented["url"] == "https://moved.example.com/hook"
    described = await call(client, "update_webhook", {"id": hook["id"], "description": "  second  "})
    assert described["description"] == "second"
    assert described["events"] == ["payment.completed", "order.paid"]
    assert described["updated_at"] >= hook["updated_at"]
    assert described["created_at"] == hook["created_at"]

    got = await call(client, "get_webhook", {"id": hook["id"]})
    assert (got["url"], got["events"], got["description"]) == (
        "https://moved.example.com/hook",
        ["payment.completed", "order.paid"],
        "second",
    )
    assert (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"] == secret

    text = await call_error(client, "update_webhook", {"id": hook["id"]})
    assert "nothing to update" in text
    text = await call_error(client, "update_webhook", {"id": hook["id"], "events": []})
    assert "events is empty" in text
    assert (await call(client, "get_webhook", {"id": hook["id"]}))["events"] == ["payment.completed", "order.paid"]


async def test_delete_removes_the_webhook_and_its_logs(client: Client, receiver: Receiver) -> None:
    keep = await create(client, PUBLIC_URL)
    hook = await create(client, receiver.url)
    await call(client, "test_webhook", {"id": hook["id"]})
    deleted = await call(client, "delete_webhook", {"id": hook["id"]})
    assert deleted == {
        "id": hook["id"],
        "deleted": True,
        "url": receiver.url,
        "removed_deliveries": 0,
        "removed_attempts": 1,
    }
    text = await call_error(client, "get_webhook", {"id": hook["id"]})
    assert f"no webhook with id {hook['id']}" in text
    assert "no webhook" in await call_error(client, "get_webhook_logs", {"id": hook["id"]})
    assert "no webhook" in await call_error(client, "delete_webhook", {"id": hook["id"]})
    assert [w["id"] for w in (await call(client, "list_webhooks"))["webhooks"]] == [keep["id"]]


# --- logs -----------------------------------------------------------------------------------------


async def test_logs_paginate_newest_first_without_overlap(
    client: Client, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    flaky = await receiver_factory(statuses=[200, 500, 200, 503, 500, 200, 200])
    hook = await create(client, flaky.url)
    results = [await call(client, "test_webhook", {"id": hook["id"]}) for _ in range(7)]
    expected_ids = [r["attempt_id"] for r in reversed(results)]
    assert len(set(expected_ids)) == 7

    seen: list[int] = []
    pages = []
    cursor: str | None = None
    while True:
        arguments: dict[str, Any] = {"id": hook["id"], "limit": 3}
        if cursor is not None:
            arguments["cursor"] = cursor
        page = await call(client, "get_webhook_logs", arguments)
        pages.append(len(page["attempts"]))
        seen.extend(a["attempt_id"] for a in page["attempts"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert pages == [3, 3, 1]
    assert seen == expected_ids  # newest first, every entry once

    # An exact multiple ends without an empty trailing page.
    first = await call(client, "get_webhook_logs", {"id": hook["id"], "limit": 7})
    assert len(first["attempts"]) == 7 and first["next_cursor"] is None
    timestamps = [a["timestamp"] for a in first["attempts"]]
    assert timestamps == sorted(timestamps, reverse=True)
    assert [a["status_code"] for a in first["attempts"]] == [200, 200, 500, 503, 200, 500, 200]


async def test_logs_status_filters(
    client: Client, hub: Hub, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    # A real delivery that fails once and then succeeds, plus two tests (one failing).
    endpoint = await receiver_factory(statuses=[500, 200, 500, 200])
    hook = await create(client, endpoint.url)
    published = await call(
        client, "send_event", {"event": "order.created", "data": hub.catalog.get("order.created").example}
    )
    assert published["queued"] == 1
    async with delivery_worker(hub):
        await endpoint.wait_for(2)
    await call(client, "test_webhook", {"id": hook["id"]})  # 500
    await call(client, "test_webhook", {"id": hook["id"]})  # 200

    every = (await call(client, "get_webhook_logs", {"id": hook["id"]}))["attempts"]
    assert [(a["is_test"], a["success"]) for a in every] == [(True, True), (True, False), (False, True), (False, False)]
    real = [a for a in every if not a["is_test"]]
    assert [a["attempt_number"] for a in real] == [2, 1]
    assert real[0]["delivery_id"] == real[1]["delivery_id"] is not None
    assert all(a["event_id"] == published["event_id"] for a in real)

    def ids(attempts: list[dict[str, Any]]) -> list[int]:
        return [a["attempt_id"] for a in attempts]

    failed = (await call(client, "get_webhook_logs", {"id": hook["id"], "status": "failed"}))["attempts"]
    success = (await call(client, "get_webhook_logs", {"id": hook["id"], "status": "success"}))["attempts"]
    tests = (await call(client, "get_webhook_logs", {"id": hook["id"], "status": "test"}))["attempts"]
    assert ids(failed) == [a["attempt_id"] for a in every if not a["success"]] and len(failed) == 2
    assert ids(success) == [a["attempt_id"] for a in every if a["success"]] and len(success) == 2
    assert ids(tests) == [a["attempt_id"] for a in every if a["is_test"]] and len(tests) == 2
    assert all("500" in a["error"] for a in failed)

    # Filters paginate too.
    page = await call(client, "get_webhook_logs", {"id": hook["id"], "status": "failed", "limit": 1})
    assert ids(page["attempts"]) == ids(failed)[:1] and page["next_cursor"]
    rest = await call(
        client, "get_webhook_logs", {"id": hook["id"], "status": "failed", "limit": 1, "cursor": page["next_cursor"]}
    )
    assert ids(rest["attempts"]) == ids(failed)[1:] and rest["next_cursor"] is None


# --- stats ----------------------------------------------------------------------------------------


async def test_stats_after_failures_then_a_success(
    client: Client, hub: Hub, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    endpoint = await receiver_factory(statuses=[500, 502, 500, 200])
    hook = await create(client, endpoint.url)
    empty = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (empty["total_attempts"], empty["success_rate"], empty["avg_response_ms"], empty["p95_response_ms"]) == (
        0,
        None,
        None,
        None,
    )

    results = [await call(client, "test_webhook", {"id": hook["id"]}) for _ in range(3)]
    stats = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (stats["total_attempts"], stats["succeeded"], stats["failed"], stats["test_attempts"]) == (3, 0, 3, 3)
    assert stats["success_rate"] == 0.0
    assert stats["consecutive_failures"] == 3
    assert stats["last_success_at"] is None and stats["last_failure_at"] is not None

    results.append(await call(client, "test_webhook", {"id": hook["id"]}))
    assert [r["success"] for r in results] == [False, False, False, True]
    stats = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (stats["total_attempts"], stats["succeeded"], stats["failed"], stats["test_attempts"]) == (4, 1, 3, 4)
    assert stats["success_rate"] == 25.0
    assert stats["consecutive_failures"] == 0
    assert stats["last_success_at"] is not None
    timings = [r["response_ms"] for r in results]
    assert stats["avg_response_ms"] == pytest.approx(sum(timings) / 4, abs=0.06)
    assert stats["p95_response_ms"] in timings
    assert stats["p95_response_ms"] >= sorted(timings)[1]
    assert stats["pending_deliveries"] == stats["held_deliveries"] == stats["failed_deliveries"] == 0
    assert stats["next_retry_at"] is None

    # window_hours: an attempt from three hours ago counts all-time but not in the last hour.
    old = time.time() - 3 * 3600
    record = AttemptRecord(
        delivery_id=None,
        webhook_id=hook["id"],
        event_id="evt_old",
        event_type="webhook.test",
        attempt_number=1,
        is_test=True,
        created_at=old,
        status_code=500,
        response_ms=5000.0,
        success=False,
        error="HTTP 500 Internal Server Error",
        response_excerpt="",
    )
    await hub.store.record_attempts([record], old)
    all_time = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (all_time["total_attempts"], all_time["failed"], all_time["window_hours"]) == (5, 4, None)
    assert all_time["success_rate"] == 20.0
    recent = await call(client, "get_webhook_stats", {"id": hook["id"], "window_hours": 1})
    assert recent["window_hours"] == 1
    assert (recent["total_attempts"], recent["succeeded"], recent["failed"]) == (4, 1, 3)
    assert recent["success_rate"] == 25.0
    assert recent["avg_response_ms"] == stats["avg_response_ms"]
    wide = await call(client, "get_webhook_stats", {"id": hook["id"], "window_hours": 4})
    assert wide["total_attempts"] == 5


# --- send_event -----------------------------------------------------------------------------------


async def test_send_event_delivers_to_subscribed_enabled_webhooks(
    database_url: str, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    subscribed = await receiver_factory()
    other_type = await receiver_factory()
    disabled = await receiver_factory()
    async with Client(create_server(make_settings(database_url))) as client:
        hook = await create(client, subscribed.url, ["order.created", "order.paid"])
        await create(client, other_type.url, ["payment.completed"])
        off = await create(client, disabled.url, ["order.created"])
        await call(client, "toggle_webhook", {"id": off["id"]})
        secret = (await call(client, "get_webhook_secret", {"id": hook["id"]}))["secret"]
        example = (await call(client, "get_webhook_sample_payload", {"event": "order.created"}))["body"]["data"]

        published = await call(client, "send_event", {"event": "order.created", "data": example})
        assert published["type"] == "order.created"
        assert published["queued"] == 1
        assert published["duplicate"] is False
        assert published["event_id"].startswith("evt_")

        (request,) = await subscribed.wait_for(1)
        payload = verify_both(secret, request.body, request.headers)
        assert payload["id"] == published["event_id"]
        assert payload["type"] == "order.created"
        assert payload["data"] == example

        # Same idempotency key twice: one event, one delivery.
        paid = (await call(client, "get_webhook_sample_payload", {"event": "order.paid"}))["body"]["data"]
        arguments = {"event": "order.paid", "data": paid, "idempotency_key": "k-1"}
        first = await call(client, "send_event", arguments)
        again = await call(client, "send_event", arguments)
        assert first["queued"] == 1 and first["duplicate"] is False
        assert again["event_id"] == first["event_id"] and again["duplicate"] is True
        requests = await subscribed.wait_for(2)
        assert requests[1].json["id"] == first["event_id"]
    assert len(subscribed.requests) == 2
    assert other_type.requests == [] and disabled.requests == []


async def test_send_event_rejects_invalid_data(client: Client, hub: Hub) -> None:
    await create(client, PUBLIC_URL)
    example = dict(hub.catalog.get("order.created").example)
    del example["id"]
    example["number"] = "one"
    text = await call_error(client, "send_event", {"event": "order.created", "data": example})
    assert "'id' is a required property" in text
    assert "get_webhook_sample_payload" in text
    text = await call_error(client, "send_event", {"event": "order.created", "data": {"id": 1.5}})
    assert "data.id" in text
    text = await call_error(client, "send_event", {"event": "order.created", "data": "not an object"})
    assert "data" in text
    text = await call_error(client, "send_event", {"event": "order.shipped.now", "data": {}})
    assert "unknown event type" in text and "get_webhook_events" in text
    stats = await call(client, "get_webhook_stats", {"id": 1})
    assert stats["pending_deliveries"] == 0


async def test_send_event_with_no_subscribers_queues_nothing(client: Client, hub: Hub) -> None:
    await create(client, PUBLIC_URL, ["payment.completed"])
    published = await call(
        client, "send_event", {"event": "order.created", "data": hub.catalog.get("order.created").example}
    )
    assert published["queued"] == 0
    assert (await call(client, "get_webhook_stats", {"id": 1}))["pending_deliveries"] == 0


# --- failed deliveries: retry_delivery and replay_failed ------------------------------------------


async def test_dead_delivery_can_be_retried_and_replayed(
    client: Client, hub: Hub, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    endpoint = await receiver_factory(statuses=[500, 500, 500, 200])
    hook = await create(client, endpoint.url)
    data = hub.catalog.get("order.created").example
    published = await call(client, "send_event", {"event": "order.created", "data": data})
    async with delivery_worker(hub):
        await endpoint.wait_for(3)  # the whole retry schedule (three attempts)
    stats = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (stats["failed_deliveries"], stats["pending_deliveries"], stats["failed"]) == (1, 0, 3)
    attempts = (await call(client, "get_webhook_logs", {"id": hook["id"], "status": "failed"}))["attempts"]
    delivery_id = attempts[0]["delivery_id"]
    assert [a["attempt_number"] for a in attempts] == [3, 2, 1]
    assert {a["event_id"] for a in attempts} == {published["event_id"]}

    retried = await call(client, "retry_delivery", {"id": delivery_id})
    assert retried["state"] == "pending" and retried["id"] == delivery_id
    text = await call_error(client, "retry_delivery", {"id": delivery_id})
    assert "not failed" in text
    async with delivery_worker(hub):
        await endpoint.wait_for(4)
    assert endpoint.requests[3].json["id"] == published["event_id"]
    stats = await call(client, "get_webhook_stats", {"id": hook["id"]})
    assert (stats["succeeded_deliveries"], stats["failed_deliveries"]) == (1, 0)

    replay = await call(client, "replay_failed", {"id": hook["id"]})
    assert replay == {"webhook_id": hook["id"], "requeued": 0, "held": False}


# --- read-only mode -------------------------------------------------------------------------------

TOOL_NAME = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


async def test_read_only_mode_serves_only_tools_annotated_read_only_and_not_sensitive(
    hub: Hub, database_url: str
) -> None:
    async with Client(create_server(hub=hub)) as full_client:
        full = {tool.name: tool for tool in (await full_client.list_tools()).tools}
    expected = {
        name
        for name, tool in full.items()
        if tool.annotations and tool.annotations.read_only_hint is True and not (tool.meta or {}).get(SENSITIVE)
    }
    async with (
        Hub.open(make_settings(database_url, read_only=True), dispatch=False) as read_only_hub,
        Client(create_server(hub=read_only_hub)) as client,
    ):
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == expected
        assert {"list_webhooks", "get_webhook", "get_webhook_logs", "get_webhook_stats"} <= names
        assert not names & {"create_webhook", "update_webhook", "delete_webhook", "toggle_webhook"}
        assert not names & {"test_webhook", "send_event", "retry_delivery", "replay_failed"}
        assert "get_webhook_secret" not in names
        text = await call_error(client, "create_webhook", {"url": PUBLIC_URL, "events": ["order.created"]})
        assert "read-only" in text and "WEBHOOK_MCP_READ_ONLY" in text
        assert "read-only" in await call_error(client, "get_webhook_secret", {"id": 1})
        assert (await call(client, "list_webhooks"))["total"] == 0


async def test_get_webhook_secret_is_the_only_sensitive_tool(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools if (tool.meta or {}).get(SENSITIVE)} == {"get_webhook_secret"}


async def test_read_only_mode_classifies_tools_added_later_by_their_annotations(database_url: str) -> None:
    server = create_server(make_settings(database_url, read_only=True))

    @server.tool(description="reads", annotations=ToolAnnotations(read_only_hint=True))
    async def peek() -> str:
        return "ok"

    @server.tool(description="writes", annotations=ToolAnnotations(read_only_hint=False))
    async def poke() -> str:
        return "changed"

    @server.tool(description="no annotations: treated as a write")
    async def unknown() -> str:
        return "?"

    @server.tool(description="reads a key", annotations=ToolAnnotations(read_only_hint=True), meta={SENSITIVE: True})
    async def peek_key() -> str:
        return "whsec_"

    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "peek" in names and not names & {"poke", "unknown", "peek_key"}
        assert (await client.call_tool("peek", {})).is_error is False
        assert "read-only" in await call_error(client, "poke", {})


@pytest.mark.parametrize("read_only", [False, True])
async def test_instructions_name_only_tools_that_exist(database_url: str, read_only: bool) -> None:
    async with (
        Hub.open(make_settings(database_url, read_only=read_only), dispatch=False) as opened,
        Client(create_server(hub=opened)) as client,
    ):
        names = {tool.name for tool in (await client.list_tools()).tools}
        instructions = client.instructions or ""
        mentioned = set(TOOL_NAME.findall(instructions))
        assert mentioned, instructions
        assert mentioned <= names, mentioned - names
        assert ("read-only" in instructions) is read_only
