"""Request headers read by dictionary lookup: Starlette's ``Headers.get`` scans the raw list and
raises and catches a KeyError for every header that is absent (``Origin``, ``Idempotency-Key``,
``X-Webhook-Tenant`` on most requests), which cost the publishing route more than parsing its
event. One :class:`RequestHeaders` per request, shared by the guard and the route through the
scope, answers the same values for a few dictionary lookups."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["SCOPE_KEY", "RequestHeaders", "request_headers"]

# Where the guard leaves the request's headers for the route below it (the server sets scope keys;
# a client cannot).
SCOPE_KEY = "webhook_mcp.headers"


class RequestHeaders(Headers):
    """Starlette's ``Headers`` (same values, same order, the first of repeated names for ``get``)
    with ``get`` and ``in`` answered from a dictionary of the raw names."""

    __slots__ = ("_first",)

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        # Reversed, so the first of a repeated name wins, as Headers.get answers.
        self._first: dict[bytes, bytes] = dict(reversed(self._list))

    def get(self, key: str, default: Any = None) -> Any:
        value = self._first.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def raw_value(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower-case bytes) as sent, undecoded."""
        return self._first.get(name)

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower().encode("latin-1") in self._first


def request_headers(scope: Scope) -> RequestHeaders:
    """The request's headers, made once per request and kept in its scope."""
    headers = scope.get(SCOPE_KEY)
    if headers is None:
        headers = scope[SCOPE_KEY] = RequestHeaders(scope)
    return headers  # type: ignore[no-any-return]
