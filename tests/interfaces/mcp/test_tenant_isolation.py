"""One tenant's caller against another tenant's ids, through every MCP tool, resource, template and
completion, over ``mcp.Client``: each answer is exactly the one for an id that does not exist
(never the data, never an error that tells the two apart), and the other tenant's rows stay as
they were. Run as the two doors run it: the request acting for the tenant (what an HTTP tenant
token does), and a server started for the tenant (``serve --tenant``)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from mcp_types import PromptReference, ResourceTemplateReference
from sqlalchemy import select

from conftest import text_of
from webhook_mcp import Hub
from webhook_mcp.interfaces.acting import acting_for
from webhook_mcp.interfaces.mcp.server import create_server
from webhook_mcp.storage.records import AttemptRecord
from webhook_mcp.storage.schema import deliveries, delivery_attempts, webhooks

pytestmark = pytest.mark.anyio
EVENT = "order.created"
GUESSED_ID = 987_654  # in range, owned by nobody
GUESSED_INBOX = "Zm9yZ2VkLWluYm94LWlkLTAwMDAw"


@dataclass
class Shop:
    tenant_id: int
    webhook_id: int
    delivery_id: int  # a dead one, so retry_delivery would act on it
    inbox_id: str


def _with_id(text: str, value: object) -> str:
    """The text with this id in it made generic, so answers about two ids compare equal."""
    return re.sub(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])", "<ID>", text)


async def _shop(hub: Hub, name: str) -> Shop:
    """A tenant with a webhook, a dead delivery with its attempt, and an inbox its caller opened."""
    from webhook_mcp.service.inboxes import InboxService

    tenant = await hub.store.create_tenant(name, time.time())
    service = hub.service.for_tenant(tenant.id)
    hook = await service.create_webhook(f"https://{name}.example/hook", [EVENT])
    published = await service.publish(EVENT, {"id": f"ord_{name}"})
    delivery_id = await hub.store.scalar(select(deliveries.c.id).where(deliveries.c.event_id == published.event_id))
    now = time.time()
    attempt = AttemptRecord(
        delivery_id, hook.id, published.event_id, EVENT, 1, False, now, 500, 12.0, False, "HTTP 500", "", "failed"
    )
    await hub.store.record_attempts([attempt], now)
    inbox = await InboxService(hub.inboxes, service).open()
    return Shop(tenant.id, hook.id, delivery_id, inbox.inbox_id)


async def _rows_of(hub: Hub, shop: Shop) -> list[Any]:
    """The shop's webhook, deliveries and attempts as stored: another tenant may change none of them."""
    rows = []
    for table in (webhooks, deliveries, delivery_attempts):
        column = table.c.id if table is webhooks else table.c.webhook_id
        rows += [tuple(row) for row in await hub.store.fetch_all(select(table).where(column == shop.webhook_id))]
    return rows


# Every tool that takes an id: its arguments, given the id to try.
ID_CALLS: dict[str, Any] = {
    "get_webhook": lambda s: {"id": s.webhook_id},
    "update_webhook": lambda s: {"id": s.webhook_id, "description": "mine now"},
    "delete_webhook": lambda s: {"id": s.webhook_id},
    "toggle_webhook": lambda s: {"id": s.webhook_id},
    "test_webhook": lambda s: {"id": s.webhook_id},
    "get_webhook_logs": lambda s: {"id": s.webhook_id, "status": "failed"},
    "get_webhook_secret": lambda s: {"id": s.webhook_id},
    "get_webhook_stats": lambda s: {"id": s.webhook_id},
    "rotate_webhook_secret": lambda s: {"id": s.webhook_id, "grace_hours": 0},
    "replay_failed": lambda s: {"id": s.webhook_id},
    "retry_delivery": lambda s: {"id": s.delivery_id},
    "read_inbox": lambda s: {"inbox_id": s.inbox_id},
    "open_inbox": lambda s: {"inbox_id": s.inbox_id, "status": 500},
}
# Tools that take no id: what each may do as the other tenant is checked below.
OTHER_TOOLS = {"list_webhooks", "create_webhook", "send_event", "get_webhook_events", "get_webhook_sample_payload"}
GUESSED = Shop(0, GUESSED_ID, GUESSED_ID, GUESSED_INBOX)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextlib.asynccontextmanager
async def _client_of(hub: Hub, tenant_id: int, door: str) -> AsyncIterator[Client]:
    """A client whose calls act for ``tenant_id``: by the request's context, or by the server's."""
    acting = acting_for(tenant_id) if door == "request" else _nothing()
    with acting:
        server = create_server(hub=hub, tenant_id=tenant_id if door == "server" else None)
        async with Client(server) as client:
            yield client


@pytest.mark.parametrize("door", ["request", "server"])
async def test_every_tool_answers_another_tenants_ids_as_ids_that_do_not_exist(hub: Hub, door: str) -> None:
    acme, globex = await _shop(hub, "acme"), await _shop(hub, "globex")
    before = await _rows_of(hub, globex)
    async with _client_of(hub, acme.tenant_id, door) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == set(ID_CALLS) | OTHER_TOOLS, "a new tool: add it to this test"
        for name, arguments in ID_CALLS.items():
            theirs = await client.call_tool(name, arguments(globex))
            guessed = await client.call_tool(name, arguments(GUESSED))
            assert theirs.is_error and guessed.is_error, (name, text_of(theirs), text_of(guessed))
            assert theirs.structured_content is None
            ids = (globex.inbox_id, GUESSED_INBOX) if "inbox" in name else (globex.webhook_id, GUESSED_ID)
            if name == "retry_delivery":
                ids = (globex.delivery_id, GUESSED_ID)
            assert _with_id(text_of(theirs), ids[0]) == _with_id(text_of(guessed), ids[1]), name
            assert "globex" not in text_of(theirs)
        # Its own ids still work: the scope is the tenant's, not nothing.
        mine = await client.call_tool("get_webhook_stats", {"id": acme.webhook_id})
        assert not mine.is_error and mine.structured_content["failed_deliveries"] == 1  # type: ignore[index]
        assert not (await client.call_tool("read_inbox", {"inbox_id": acme.inbox_id})).is_error
        await _tools_without_ids(client, acme, globex)
    assert await _rows_of(hub, globex) == before


async def _tools_without_ids(client: Client, acme: Shop, globex: Shop) -> None:
    listed = json.loads(text_of(await client.call_tool("list_webhooks", {})))
    assert [hook["id"] for hook in listed["webhooks"]] == [acme.webhook_id]
    created = await client.call_tool("create_webhook", {"url": "https://acme.example/two", "events": [EVENT]})
    assert not created.is_error
    sent = await client.call_tool("send_event", {"event": EVENT, "data": {"id": "ord_2"}})
    assert not sent.is_error and sent.structured_content["queued"] == 2  # type: ignore[index]  # acme's two
    assert not (await client.call_tool("get_webhook_events", {})).is_error  # the catalog is everyone's
    assert not (await client.call_tool("get_webhook_sample_payload", {"event": EVENT})).is_error


@pytest.mark.parametrize("door", ["request", "server"])
async def test_resources_templates_and_completions_show_only_the_callers_tenant(hub: Hub, door: str) -> None:
    acme, globex = await _shop(hub, "acme"), await _shop(hub, "globex")
    async with _client_of(hub, acme.tenant_id, door) as client:
        uris = {str(resource.uri) for resource in (await client.list_resources()).resources}
        assert f"webhooks://webhooks/{acme.webhook_id}" in uris
        assert f"webhooks://webhooks/{globex.webhook_id}" not in uris
        (listed,) = (await client.read_resource("webhooks://webhooks")).contents
        assert [hook["id"] for hook in json.loads(listed.text)["webhooks"]] == [acme.webhook_id]  # type: ignore[union-attr]
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {"webhooks://event-types/{name}", "webhooks://webhooks/{id}"}, "a new template: test it"
        theirs = await _resource_error(client, f"webhooks://webhooks/{globex.webhook_id}")
        guessed = await _resource_error(client, f"webhooks://webhooks/{GUESSED_ID}")
        assert _with_id(theirs, globex.webhook_id) == _with_id(guessed, GUESSED_ID)
        assert (await client.read_resource(f"webhooks://webhooks/{acme.webhook_id}")).contents
        for prompt in ("debug_webhook", "test_endpoint", "manage_events"):
            reference = PromptReference(type="ref/prompt", name=prompt)
            completed = (await client.complete(reference, {"name": "id", "value": ""})).completion
            assert completed.values == [str(acme.webhook_id)]
        template = ResourceTemplateReference(type="ref/resource", uri="webhooks://webhooks/{id}")
        completed = (await client.complete(template, {"name": "id", "value": str(globex.webhook_id)})).completion
        assert completed.values == []


async def _resource_error(client: Client, uri: str) -> str:
    with pytest.raises(Exception) as raised:  # the SDK's error type is not the point
        await client.read_resource(uri)
    return str(raised.value)


async def test_a_tenant_that_publishes_never_queues_for_another_tenants_webhooks(hub: Hub) -> None:
    acme, globex = await _shop(hub, "acme"), await _shop(hub, "globex")
    default_hook = await hub.service.create_webhook("https://default.example/hook", [EVENT])
    before = await hub.store.fetch_all(select(deliveries.c.id))
    async with _client_of(hub, acme.tenant_id, "request") as client:
        sent = await client.call_tool("send_event", {"event": EVENT, "data": {"id": "ord_9"}})
        assert not sent.is_error and sent.structured_content["queued"] == 1  # type: ignore[index]
    published = await hub.service.for_tenant(acme.tenant_id).publish_many([(EVENT, {"id": "ord_10"}, None)] * 3)
    assert [p.queued for p in published] == [1, 1, 1]
    new = await hub.store.fetch_all(
        select(deliveries.c.webhook_id).where(deliveries.c.id.not_in([r.id for r in before]))
    )
    assert {row.webhook_id for row in new} == {acme.webhook_id}
    assert not {globex.webhook_id, default_hook.id} & {row.webhook_id for row in new}
