"""The guard's and the publishing route's fast paths answer exactly what the slow ones did:
RequestHeaders agrees with Starlette's Headers, the guard's Host/Origin shortcut only ever admits
what the SDK's check admits, and the door's admin-token shortcut only what its full parse does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request

from webhook_mcp.interfaces.http.auth import HttpGuard
from webhook_mcp.interfaces.http.callers import OPERATOR, Caller, TokenDoor
from webhook_mcp.interfaces.http.headers import SCOPE_KEY, RequestHeaders, request_headers

pytestmark = pytest.mark.anyio

NAMES = st.sampled_from([b"host", b"origin", b"authorization", b"content-type", b"x-webhook-tenant", b"accept"])
VALUES = st.binary(max_size=12)
SECURITY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:8000", "localhost:8000", "example.test:*"],
    allowed_origins=["http://127.0.0.1:8000", "http://localhost:*"],
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def scope(headers: list[tuple[bytes, bytes]], path: str = "/v1/events") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_request_headers_answer_as_starlette_headers_do(raw: list[tuple[bytes, bytes]]) -> None:
    fast, slow = RequestHeaders(scope(list(raw))), Headers(scope=scope(list(raw)))
    for name in ("Host", "origin", "Authorization", "content-type", "x-webhook-tenant", "accept", "absent"):
        assert fast.get(name) == slow.get(name)
        assert fast.get(name, "default") == slow.get(name, "default")
        assert (name in fast) == (name in slow)
    assert fast.raw == slow.raw
    assert fast.getlist("host") == slow.getlist("host")


def test_one_request_makes_its_headers_once() -> None:
    request = scope([(b"host", b"127.0.0.1:8000")])
    first = request_headers(request)
    assert request[SCOPE_KEY] is first
    assert request_headers(request) is first


@given(st.one_of(st.none(), st.sampled_from(["127.0.0.1:8000", "example.test:9", "evil:8000", ""])), st.none() | VALUES)
async def test_the_guard_admits_exactly_what_the_sdk_check_admits(host: str | None, origin: bytes | None) -> None:
    raw = ([] if host is None else [(b"host", host.encode())]) + ([] if origin is None else [(b"origin", origin)])
    guard = HttpGuard(_unreachable_app, SECURITY, token=None)
    sdk = await TransportSecurityMiddleware(SECURITY).validate_request(Request(scope(list(raw))))
    admitted = await guard._admit(scope(list(raw)))
    if sdk is None:
        assert admitted is OPERATOR
    else:
        assert not isinstance(admitted, Caller)
        assert admitted.status_code == sdk.status_code


@pytest.mark.parametrize(
    "sent",
    ["Bearer admin-token", "bearer admin-token", "BEARER  admin-token ", "Bearer admin-token\t", "Bearer admin"],
)
async def test_the_admin_shortcut_answers_as_the_full_parse(sent: str) -> None:
    door = TokenDoor("admin-token", tenants=None)  # type: ignore[arg-type]  # no tenant token is sent
    plain = TokenDoor("admin-token", tenants=None)  # type: ignore[arg-type]
    plain._admin_header = None  # the full parse only
    headers = RequestHeaders(scope([(b"authorization", sent.encode())]))
    fast, full = await door.caller(headers), await plain.caller(headers)
    assert (fast is OPERATOR) == (full is OPERATOR)
    if fast is not OPERATOR:
        assert not isinstance(fast, Caller) and not isinstance(full, Caller)
        assert (fast.status_code, fast.body) == (full.status_code, full.body)


async def test_an_admin_token_with_surrounding_spaces_has_no_shortcut() -> None:
    door = TokenDoor(" admin-token", tenants=None)  # type: ignore[arg-type]
    headers = RequestHeaders(scope([(b"authorization", b"Bearer  admin-token")]))
    assert door._admin_header is None
    assert await door.caller(headers) is not OPERATOR  # as before: the sent token is stripped


async def _unreachable_app(*_: Any) -> None:
    raise AssertionError("only _admit is called")
