"""What an assistant sees beyond the tools' results: the size of the tool list, argument errors,
resources, prompts, completions, the built-in inbox and progress, through the real ``mcp.Client``.

The hub here allows no private networks, so every delivery to the inbox goes through the guard's
one exception (its own exact URLs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import PromptReference, ResourceTemplateReference, TextContent, TextResourceContents

from conftest import Receiver, make_settings, text_of
from conftest import call_tool as call
from webhook_mcp import Hub
from webhook_mcp.interfaces.mcp.server import create_server

pytestmark = pytest.mark.anyio

TOOLS_LIST_BUDGET = 16_000
CONTRACT_INPUTS = {
    "list_webhooks": set(),
    "get_webhook_events": set(),
    "get_webhook": {"id"},
    "create_webhook": {"url", "events", "description"},
    "update_webhook": {"id", "url", "events", "description"},
    "delete_webhook": {"id"},
    "test_webhook": {"id", "event"},
    "get_webhook_sample_payload": {"event"},
    "get_webhook_logs": {"id", "limit", "cursor", "status"},
    "get_webhook_secret": {"id"},
    "get_webhook_stats": {"id", "window_hours"},
    "toggle_webhook": {"id"},
}


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    """No private networks allowed: the inbox must be reachable through its own exception."""
    settings = make_settings(database_url, allowed_private_networks=[], delivery_timeout=1.0)
    async with Hub.open(settings, dispatch=False) as opened:
        yield opened


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[Client]:
    async with Client(create_server(hub=hub)) as connected:
        yield connected


async def test_the_tool_list_is_lean_and_keeps_the_contract(client: Client) -> None:
    listed = await client.list_tools()
    size = len(json.dumps(listed.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert size <= TOOLS_LIST_BUDGET, f"tools/list is {size} characters"
    tools = {tool.name: tool for tool in listed.tools}
    for name, inputs in CONTRACT_INPUTS.items():
        assert set(tools[name].input_schema.get("properties", {})) == inputs, name
    # Lean, not vague: every description still says what to call next or what comes back.
    assert all(tool.description and len(tool.description) >= 80 for tool in listed.tools)
    assert "title" not in json.dumps([tool.output_schema for tool in listed.tools])


@pytest.mark.parametrize("bad", [True, False, 1.5, "1.5", [1], {"id": 1}])
async def test_a_bad_id_is_one_line_in_the_projects_words_for_every_tool(client: Client, bad: Any) -> None:
    await call(client, "create_webhook", {"url": "https://hooks.example.com/a", "events": ["order.created"]})
    tools = (await client.list_tools()).tools
    with_id = [tool.name for tool in tools if "id" in tool.input_schema.get("properties", {})]
    assert len(with_id) >= 10
    for name in with_id:
        result = await client.call_tool(name, {"id": bad})
        text = text_of(result)
        assert result.is_error, (name, bad)
        assert "\n" not in text and "pydantic" not in text and "http" not in text, text
        assert text.startswith(f"Error executing tool {name}: id got "), text
        assert "send a whole number" in text, text
    # A numeric string still names a webhook.
    assert (await call(client, "get_webhook", {"id": "1"}))["id"] == 1


async def test_other_argument_errors_read_alike(client: Client) -> None:
    cases = {
        ("get_webhook_stats", json.dumps({"id": 1, "window_hours": True})): "window_hours got true; send a number",
        ("get_webhook_logs", json.dumps({"id": 1, "limit": 2.5})): "limit got 2.5; send a whole number",
        ("get_webhook_logs", json.dumps({"id": 1, "status": "x"})): 'status got "x"; send one of "all"',
        ("send_event", json.dumps({"event": "order.created", "data": [1]})): "data got [1]; send a JSON object",
        ("create_webhook", json.dumps({"url": "https://a.example"})): "events is required; send a list",
        ("open_inbox", json.dumps({"status": 99})): "status got 99; send a whole number from 200 to 599",
    }
    for (name, arguments), expected in cases.items():
        result = await client.call_tool(name, json.loads(arguments))
        assert result.is_error and expected in text_of(result), text_of(result)
        assert "\n" not in text_of(result)


async def test_resources_templates_prompts_and_completions(client: Client) -> None:
    hook = await call(client, "create_webhook", {"url": "https://hooks.example.com/b", "events": ["order.created"]})
    uris = {str(resource.uri) for resource in (await client.list_resources()).resources}
    assert {"webhooks://event-types", "webhooks://webhooks", "webhooks://event-types/order.created"} <= uris
    assert f"webhooks://webhooks/{hook['id']}" in uris
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert templates == {"webhooks://event-types/{name}", "webhooks://webhooks/{id}"}

    event_type = json.loads(await read_text(client, "webhooks://event-types/order.created"))
    assert event_type["body"]["type"] == "order.created" and event_type["data_schema"]["type"] == "object"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(event_type["headers"])
    report = json.loads(await read_text(client, f"webhooks://webhooks/{hook['id']}"))
    assert report["webhook"]["url"] == hook["url"] and "success_rate" in report["health"]
    assert report["recent_failures"] == []
    with pytest.raises(Exception, match="no webhook with id 999"):
        await client.read_resource("webhooks://webhooks/999")

    prompts = {p.name: {a.name for a in p.arguments or []} for p in (await client.list_prompts()).prompts}
    assert prompts == {
        "setup_webhook": {"url", "events"},
        "debug_webhook": {"id"},
        "test_endpoint": {"id", "event"},
        "manage_events": {"id", "events"},
    }
    debug = await client.get_prompt("debug_webhook", {"id": str(hook["id"])})
    guide = debug.messages[0].content
    assert isinstance(guide, TextContent)
    assert all(tool in guide.text for tool in ("get_webhook_stats", "get_webhook_logs", "test_webhook"))

    prompt = PromptReference(type="ref/prompt", name="debug_webhook")
    assert (await client.complete(prompt, {"name": "id", "value": ""})).completion.values == [str(hook["id"])]
    template = ResourceTemplateReference(type="ref/resource", uri="webhooks://event-types/{name}")
    names = (await client.complete(template, {"name": "name", "value": "payment."})).completion.values
    assert names and all(name.startswith("payment.") for name in names)
    manage = PromptReference(type="ref/prompt", name="manage_events")
    listed = (await client.complete(manage, {"name": "events", "value": "order.created, order.up"})).completion
    assert listed.values == ["order.created, order.updated"]


async def read_text(client: Client, uri: str) -> str:
    (content,) = (await client.read_resource(uri)).contents
    assert isinstance(content, TextResourceContents)
    return content.text


async def test_an_inbox_records_a_test_with_its_signature_checked(client: Client) -> None:
    inbox = await call(client, "open_inbox")
    hook = await call(client, "create_webhook", {"url": inbox["url"], "events": ["order.created"]})
    tested = await call(client, "test_webhook", {"id": hook["id"]})
    assert tested["success"] is True and tested["status_code"] == 200, tested
    read = await call(client, "read_inbox", {"inbox_id": inbox["inbox_id"]})
    (request,) = read["requests"]
    assert read["webhooks"] == [hook["id"]] and request["event_id"] == tested["event_id"]
    assert request["signature_valid"] is True and request["signature"].startswith("valid")
    assert request["event_type"] == "webhook.test" and request["headers"]["content-type"] == "application/json"

    # Rotating the secret: the inbox checks against the new one (requests carry both).
    await call(client, "rotate_webhook_secret", {"id": hook["id"], "grace_hours": 0})
    await call(client, "open_inbox", {"inbox_id": inbox["inbox_id"], "status": 500})
    failed = await call(client, "test_webhook", {"id": hook["id"]})
    assert failed["success"] is False and failed["status_code"] == 500
    newest = (await call(client, "read_inbox", {"inbox_id": inbox["inbox_id"]}))["requests"][0]
    assert newest["signature_valid"] is True and newest["event_id"] == failed["event_id"]
    report = json.loads(await read_text(client, f"webhooks://webhooks/{hook['id']}"))
    assert [attempt["status_code"] for attempt in report["recent_failures"]] == [500]


async def test_look_alikes_of_an_inbox_url_stay_blocked(client: Client) -> None:
    inbox = await call(client, "open_inbox")
    for url in (inbox["url"] + "/", inbox["url"] + "?x", inbox["url"][:-2], inbox["url"].rsplit("/", 2)[0] + "/mcp"):
        result = await client.call_tool("create_webhook", {"url": url, "events": ["order.created"]})
        assert result.is_error and "blocked" in text_of(result), (url, text_of(result))
    missing = await client.call_tool("read_inbox", {"inbox_id": "nope"})
    assert missing.is_error and "open_inbox" in text_of(missing)


async def test_test_webhook_reports_progress_and_is_bounded(
    hub: Hub, receiver_factory: Callable[..., Awaitable[Receiver]]
) -> None:
    # An endpoint that never answers, on loopback: a hub that allows loopback reaches it.
    slow = await receiver_factory(hang=True)
    settings = make_settings(hub.settings.database_url, delivery_timeout=0.5)
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reports.append((done, total, message))

    async with Hub.open(settings, dispatch=False) as loopback, Client(create_server(hub=loopback)) as allowed:
        hook = await call(allowed, "create_webhook", {"url": slow.url, "events": ["order.created"]})
        with anyio.fail_after(settings.delivery_timeout + 5):
            result = await allowed.call_tool("test_webhook", {"id": hook["id"]}, progress_callback=progress)
    assert result.structured_content is not None and result.structured_content["success"] is False
    assert "timed out" in str(result.structured_content["error"])
    assert reports and reports[0][1] == settings.delivery_timeout + 1
    assert all(message == "waiting for the endpoint" for *_, message in reports)


async def test_changing_a_webhook_notifies_listeners(client: Client) -> None:
    hook = await call(client, "create_webhook", {"url": "https://hooks.example.com/c", "events": ["order.created"]})
    uri = f"webhooks://webhooks/{hook['id']}"
    async with client.listen(resources_list_changed=True, resource_subscriptions=[uri]) as subscription:
        await call(client, "toggle_webhook", {"id": hook["id"]})
        seen: list[str] = []
        with anyio.fail_after(5):
            async for event in subscription:
                seen.append(type(event).__name__ + ":" + str(getattr(event, "uri", "")))
                if len(seen) == 2:
                    break
    assert any(name.startswith("ResourcesListChanged") for name in seen), seen
    assert f"ResourceUpdated:{uri}" in seen, seen
