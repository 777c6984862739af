"""Hostile input, proven: hypothesis drives every tool through the real ``mcp.Client`` and the
ingest route through ASGI with random, huge, deeply nested, wrong-typed and unicode input.
Nothing may crash, hang or answer 500, and whatever is refused leaves the database as it was.

The tool list is read from the server itself, so tools added later are covered without a change
here; each argument gets values that fit its name or JSON Schema type, mixed with anything at all.
One hub per test function; hypothesis runs in a worker thread and hands each call to the loop."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolRequestParams, CallToolResult, Tool
from sqlalchemy import select

from conftest import Receiver, make_settings
from webhook_mcp import Hub, load_catalog
from webhook_mcp.interfaces.http.app import create_http_app
from webhook_mcp.interfaces.http.ingest import EVENTS_PATH
from webhook_mcp.interfaces.mcp.server import create_server
from webhook_mcp.storage.schema import metadata

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 15.0
TOKEN = "hostile-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
BOUNDED = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
CATALOG = load_catalog()
EVENT_NAMES = [event_type.name for event_type in CATALOG.subscribable()]


def _tools() -> list[Tool]:
    """Every tool the full server registers, read once at collection (no database is opened)."""
    with tempfile.TemporaryDirectory() as directory:
        server = create_server(make_settings(f"sqlite:///{Path(directory) / 'unused.db'}"))
        return list(anyio.run(server.list_tools))


TOOLS = _tools()


# --- strategies -----------------------------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\U0010ffff",
    "\u202e",
    "\ufeff",
    "١٢٣",
    "𝟙𝟚𝟛",
    "\r\n",
    "%00",
    "../../etc/passwd",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
    "whsec_",
    "order.created\x00",
    "ORDER.CREATED",
    " order.created",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "https://例え.jp/hook",
    "https://xn--/",
    "https://hooks.example.com/\ud800",
    "https://hooks.example.com/a\x00b",
    "https://hooks.example.com:99999/",
    "https://user:pw@hooks.example.com/",
    "javascript:alert(1)",
]
EXTREME_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**40]
EXTREME_FLOATS = [0.0, -0.0, 5e-324, 1e308, -1e308, 1e-9, float("inf"), float("-inf"), float("nan")]

any_char = st.characters(exclude_categories=())  # includes surrogates and NUL
short_text = st.text(any_char, max_size=40)
nasty_text = st.text(
    st.sampled_from(["\x00", "\ud800", "\udfff", "\x7f", "\u202e", "é", "😀", "a", ".", " ", "\n"]), max_size=20
)
huge_text = st.builds(
    lambda piece, count: piece * count, st.sampled_from(["x", "é", "😀", "\x00", "\ud800"]), st.integers(600, 300_000)
)
strings = st.one_of(st.sampled_from(SPECIAL_STRINGS), nasty_text, short_text, huge_text)
ints = st.one_of(st.integers(), st.sampled_from(EXTREME_INTS))
floats = st.one_of(st.floats(), st.sampled_from(EXTREME_FLOATS))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, strings)


def _nest(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# The client refuses to serialize beyond about 255 levels, so tool arguments stay under that.
deep = st.builds(_nest, st.integers(20, 240), st.sampled_from(["list", "dict"]), scalars)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(short_text, children, max_size=4),
    max_leaves=12,
)
anything = st.one_of(scalars, json_values, deep)


def _example_with(name: str, replacement: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    return replacement(dict(CATALOG.get(name).example))


event_data = st.one_of(
    st.sampled_from(EVENT_NAMES).map(lambda name: dict(CATALOG.get(name).example)),
    st.builds(
        lambda name, key, value: _example_with(name, lambda data: {**data, key: value}),
        st.sampled_from(EVENT_NAMES),
        st.sampled_from(["id", "note", "customer_email", "total", "currency", "\x00", "\ud800"]),
        anything,
    ),
    anything,
)
event_names = st.one_of(st.sampled_from([*EVENT_NAMES, "webhook.test"]), strings)
urls = st.one_of(
    st.sampled_from(["https://hooks.example.com/in", "http://127.0.0.1:9/closed", "https://192.0.2.1/x"]),
    st.builds(lambda host, path: f"https://{host}/{path}", short_text, short_text),
    strings,
)

# Values that fit an argument by name; unknown names fall back to their JSON Schema type.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.integers(-2, 4), ints),
    "url": urls,
    "events": st.one_of(st.lists(event_names, max_size=6), st.lists(st.sampled_from(EVENT_NAMES), max_size=60)),
    "event": event_names,
    "description": strings,
    "data": event_data,
    "limit": st.one_of(st.integers(-5, 150), ints),
    "cursor": st.one_of(st.integers(-5, 10**20).map(str), strings),
    "status": st.one_of(st.sampled_from(["all", "success", "failed", "test"]), strings),
    "idempotency_key": strings,
}
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "integer": ints,
    "number": st.one_of(floats, ints),
    "string": strings,
    "boolean": st.booleans(),
    "array": st.lists(anything, max_size=5),
    "object": st.dictionaries(short_text, anything, max_size=5),
}


# A call that passes validation, so one hostile value at a time reaches the service itself.
VALID: dict[str, Any] = {
    "id": 1,
    "url": "https://hooks.example.com/in",
    "events": ["order.created"],
    "event": "order.created",
    "description": "shop hook",
    "data": dict(CATALOG.get("order.created").example),
    "limit": 5,
    "cursor": None,
    "status": "all",
    "idempotency_key": "key-1",
}
VALID_BY_TYPE: dict[str, Any] = {"integer": 1, "number": 1.0, "string": "x", "boolean": True, "array": [], "object": {}}
# Tried on every string argument of every tool, whatever hypothesis draws besides.
NASTY_STRINGS = ["\ud800", "a\udfffb", "a\x00b", "\x00", "x" * 300_000, "é" * 100_000]


def _schema_type(schema: dict[str, Any]) -> str | None:
    if isinstance(schema.get("type"), str):
        return str(schema["type"])
    for kind in schema.get("type", []):  # a nullable type: ["number", "null"]
        if kind != "null":
            return str(kind)
    for option in schema.get("anyOf", []):
        if option.get("type") not in (None, "null"):
            return str(option["type"])
    return None


def valid_arguments(tool: Tool) -> dict[str, Any]:
    properties: dict[str, Any] = tool.input_schema.get("properties", {})
    return {
        name: VALID[name] if name in VALID else VALID_BY_TYPE.get(_schema_type(schema) or "", "x")
        for name, schema in properties.items()
    }


def nasty_examples(tool: Tool) -> list[dict[str, Any]]:
    """Valid calls with one string argument replaced by something nasty."""
    base = valid_arguments(tool)
    properties: dict[str, Any] = tool.input_schema.get("properties", {})
    text_arguments = [name for name, schema in properties.items() if _schema_type(schema) == "string"]
    examples = [{**base, name: nasty} for name in text_arguments for nasty in NASTY_STRINGS]
    if "events" in properties:
        examples += [{**base, "events": [nasty]} for nasty in NASTY_STRINGS[:4]]
        examples.append({**base, "events": ["order.created"] * 100_000})
    if "data" in properties:
        examples += [{**base, "data": {**base["data"], "id": nasty}} for nasty in NASTY_STRINGS]
        # Surrogate keys are left to the ingest route: the client cannot serialize them.
        examples += [{**base, "data": {**base["data"], nasty: 1}} for nasty in NASTY_STRINGS[2:]]
    return examples


def arguments_for(tool: Tool) -> st.SearchStrategy[dict[str, Any]]:
    """Each argument present or not, plausible or anything, sometimes with extra keys; or a valid
    call with one argument swapped for anything, so hostile values get past validation."""
    properties: dict[str, Any] = tool.input_schema.get("properties", {})
    plausible = {
        name: PLAUSIBLE.get(name, BY_TYPE.get(_schema_type(schema) or "", anything))
        for name, schema in properties.items()
    }
    known = st.fixed_dictionaries({}, optional={name: st.one_of(value, anything) for name, value in plausible.items()})
    extra = st.dictionaries(st.text(max_size=12).filter(lambda key: key not in properties), anything, max_size=2)
    strategies = [known, st.builds(lambda args, more: {**more, **args}, known, extra)]
    if properties:
        base = valid_arguments(tool)
        strategies.append(
            st.sampled_from(sorted(properties)).flatmap(
                lambda name: st.one_of(plausible[name], anything).map(lambda value: {**base, name: value})
            )
        )
    return st.one_of(*strategies)


# --- helpers --------------------------------------------------------------------------------------


async def snapshot(hub: Hub) -> dict[str, list[tuple[Any, ...]]]:
    tables = {}
    for table in metadata.sorted_tables:
        rows = await hub.store.fetch_all(select(table).order_by(*table.primary_key.columns))
        tables[table.name] = [tuple(row) for row in rows]
    return tables


class Tables:
    """The database as last seen. One snapshot per call: after a success it is simply taken again;
    after a refusal it must equal the last one."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.seen: dict[str, list[tuple[Any, ...]]] | None = None

    async def accept(self) -> None:
        self.seen = await snapshot(self.hub)

    async def unchanged(self) -> bool:
        now = await snapshot(self.hub)
        same, self.seen = now == self.seen, now
        return same


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def sendable(tool: Tool, arguments: dict[str, Any]) -> bool:
    """Whether the client can put this on the wire at all (it refuses surrogate dict keys and
    nesting beyond its serializer's depth); what it refuses never reaches a server."""
    try:
        CallToolRequestParams(name=tool.name, arguments=arguments).model_dump(mode="json", by_alias=True)
    except ValueError:
        return False
    return True


def run_in_thread(test: Callable[[], None]) -> Any:
    """Hypothesis drives a sync function; running it in a worker thread lets each example
    call back into this event loop (``anyio.from_thread.run``), where the hub lives."""
    return anyio.to_thread.run_sync(test)


async def check_tool_call(client: Client, tables: Tables, tool: Tool, arguments: dict[str, Any]) -> bool:
    """Whether the call succeeded; a refusal must be a clear error that changed nothing."""
    with anyio.fail_after(CALL_TIMEOUT):
        result = await client.call_tool(tool.name, arguments)
    text = text_of(result)
    assert "Traceback" not in text and 'File "' not in text, text
    if not result.is_error:
        assert isinstance(result.structured_content, dict), text
        await tables.accept()
        return True
    prefix = f"Error executing tool {tool.name}"
    assert text.strip() != prefix, f"{tool.name} crashed (internal error) on {arguments!r:.500}"
    message = text.removeprefix(prefix).lstrip(": ")
    subjects = [word for word in tool.name.split("_") if len(word) > 3]
    named = [*tool.input_schema.get("properties", {}), *subjects, "argument"]
    assert any(name in message for name in named), f"{tool.name}: error names no argument: {message:.500}"
    assert await tables.unchanged(), f"{tool.name} changed the database although it refused {arguments!r:.500}"
    return False


@pytest.fixture
async def seeded(database_url: str, receiver: Receiver) -> AsyncIterator[tuple[Client, Hub]]:
    """On each database: a webhook (id 1) at a real receiver, a pending delivery and a test
    attempt in its logs."""
    async with (
        Hub.open(make_settings(database_url), dispatch=False) as hub,
        Client(create_server(hub=hub)) as client,
    ):
        created = await client.call_tool("create_webhook", {"url": receiver.url, "events": ["order.created"]})
        assert not created.is_error, text_of(created)
        await hub.publish("order.created", dict(CATALOG.get("order.created").example))
        tested = await client.call_tool("test_webhook", {"id": 1})
        assert not tested.is_error, text_of(tested)
        yield client, hub


# --- the tools ------------------------------------------------------------------------------------


def test_every_tool_is_covered() -> None:
    names = {tool.name for tool in TOOLS}
    assert {"create_webhook", "update_webhook", "send_event", "get_webhook_logs", "test_webhook"} <= names
    for tool in TOOLS:
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert name in PLAUSIBLE or _schema_type(schema) in BY_TYPE, (tool.name, name)


@pytest.mark.parametrize("tool", TOOLS, ids=[tool.name for tool in TOOLS])
async def test_tools_survive_hostile_arguments(tool: Tool, seeded: tuple[Client, Hub]) -> None:
    client, hub = seeded
    tables = Tables(hub)
    await tables.accept()
    outcomes: list[bool] = []

    @BOUNDED
    @given(arguments_for(tool))
    def check(arguments: dict[str, Any]) -> None:
        assume(sendable(tool, arguments))
        outcomes.append(anyio.from_thread.run(check_tool_call, client, tables, tool, arguments))

    for arguments in nasty_examples(tool):
        check = example(arguments)(check)
    await run_in_thread(check)
    if tool.input_schema.get("properties"):
        assert False in outcomes, "no call was refused: the strategies are not hostile"


# --- the ingest route -----------------------------------------------------------------------------


def _envelope(event_type: Any, data: Any, key: Any, extra: dict[str, Any], omit: frozenset[str]) -> bytes:
    body = {"type": event_type, "data": data, "idempotency_key": key, **extra}
    body = {name: value for name, value in body.items() if name not in omit}
    return json.dumps(body, ensure_ascii=True).encode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


envelopes = st.builds(
    _envelope,
    st.one_of(event_names, anything),
    st.one_of(event_data, anything),
    st.one_of(st.none(), strings, anything),
    st.dictionaries(short_text, anything, max_size=2),
    st.frozensets(st.sampled_from(["type", "data", "idempotency_key"])),
)


def _valid_envelope(name: str, key: str | None, changes: dict[str, Any]) -> bytes:
    data = {**CATALOG.get(name).example, **changes}
    return json.dumps({"type": name, "data": data, "idempotency_key": key}).encode()


# Envelopes close to valid, so some are accepted (and change the database) and the rest are
# refused by the schema rather than by the first type check.
near_valid_envelopes = st.builds(
    _valid_envelope,
    st.sampled_from(EVENT_NAMES),
    st.one_of(st.none(), st.text(max_size=10), strings),
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(["id", "note", "currency", "total"]), anything, max_size=2)),
)


def _brackets(depth: int, pair: str) -> bytes:
    return (pair[0] * depth + pair[1] * depth).encode()


def _deep_data(depth: int) -> bytes:
    return ('{"type": "order.created", "data": ' + '{"a": ' * depth + "1" + "}" * depth + "}").encode()


def _huge_data(size: int) -> bytes:
    return b'{"type": "order.created", "data": {"x": "' + b"a" * size + b'"}}'


bodies = st.one_of(
    near_valid_envelopes,
    envelopes,
    st.binary(max_size=3000),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(_brackets, st.integers(100, 200_000), st.sampled_from(["[]", "{}"])),
    st.builds(_deep_data, st.integers(100, 50_000)),
    st.builds(_huge_data, st.integers(200_000, 400_000)),
    envelopes.map(lambda body: body[: len(body) // 2]),
)
content_types = st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""])
header_values = st.one_of(
    st.binary(max_size=200).filter(lambda value: b"\r" not in value and b"\n" not in value),
    st.sampled_from([b"", b"Bearer", b"Bearer ", b"bearer " + TOKEN.encode(), b"Bearer " + TOKEN.encode() + b"x"]),
    st.sampled_from([b"evil.example", b"127.0.0.1:8000", b"localhost:8000", b"[::1]:8000", b"null", b"\xff\xfe"]),
)
VALID_BODY = json.dumps({"type": "order.created", "data": dict(CATALOG.get("order.created").example)}).encode()


@pytest.fixture
async def ingest(sqlite_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    """The whole HTTP app (guard, MCP endpoint, ingest route) in process, with a token."""
    async with Hub.open(make_settings(sqlite_url, api_token=TOKEN), dispatch=False) as hub:
        app = create_http_app(hub, "streamable-http", "127.0.0.1", 8000)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            yield client, hub


async def check_ingest(client: httpx.AsyncClient, tables: Tables, body: bytes, headers: dict[str, Any]) -> int:
    """The status; anything but 202 must be a JSON error that changed nothing."""
    with anyio.fail_after(CALL_TIMEOUT):
        response = await client.post(EVENTS_PATH, content=body, headers=headers)
    assert response.status_code in {202, 400, 401, 403, 413, 415, 421, 422}, (response.status_code, response.text[:500])
    if response.status_code == 202:
        assert response.json()["event_id"].startswith("evt_")
        await tables.accept()
        return 202
    error = response.json()["error"]
    assert error["code"] and error["message"], error
    assert "Traceback" not in response.text
    assert await tables.unchanged(), f"refused with {response.status_code} but the database changed"
    return response.status_code


async def test_ingest_route_survives_hostile_bodies(ingest: tuple[httpx.AsyncClient, Hub]) -> None:
    client, hub = ingest
    tables = Tables(hub)
    await tables.accept()
    statuses: set[int] = set()

    # Each kind of answer is reached whatever the random draw.
    @settings(BOUNDED, max_examples=150)
    @given(body=bodies, content_type=content_types)
    @example(body=VALID_BODY, content_type="application/json")
    @example(body=b"{", content_type="application/json")
    @example(body=b'{"type": "order.created", "data": {}}', content_type="application/json")
    @example(body=VALID_BODY, content_type="text/plain")
    def check(body: bytes, content_type: str) -> None:
        headers = {**AUTH, "content-type": content_type}
        statuses.add(anyio.from_thread.run(check_ingest, client, tables, body, headers))

    await run_in_thread(check)
    assert {202, 400, 415, 422} <= statuses, statuses


async def test_ingest_route_survives_hostile_headers(ingest: tuple[httpx.AsyncClient, Hub]) -> None:
    client, hub = ingest
    tables = Tables(hub)
    await tables.accept()
    statuses: set[int] = set()

    # Both refusals are reached whatever the random draw: a foreign Host, and the right Host
    # with a wrong token.
    @settings(BOUNDED, max_examples=100)
    @given(authorization=header_values, host=header_values, origin=st.one_of(st.none(), header_values))
    @example(authorization=b"Bearer wrong", host=b"evil.example", origin=None)
    @example(authorization=b"Bearer wrong", host=b"127.0.0.1:8000", origin=None)
    def check(authorization: bytes, host: bytes, origin: bytes | None) -> None:
        headers: dict[str, Any] = {"authorization": authorization, "host": host, "content-type": "application/json"}
        if origin is not None:
            headers["origin"] = origin
        statuses.add(anyio.from_thread.run(check_ingest, client, tables, VALID_BODY, headers))

    await run_in_thread(check)
    assert {401, 421} <= statuses, statuses
