"""Standard JSON only (RFC 8259), at every door and in every body sent.

Python's ``json`` reads and writes ``NaN``, ``Infinity`` and ``-Infinity`` (and turns ``1e999`` into
infinity); strict parsers (JavaScript, Go, serde) refuse such a body, so a receiver would fail the
delivery until it dies. :func:`loads_strict` parses text and :func:`check_json` checks data parsed
elsewhere (the MCP SDK, the Python API); both raise :class:`NotJSONError` naming where the value is,
e.g. ``data.extra: NaN is not JSON; send a number or null``. :func:`dumps_strict` never writes one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from webhook_mcp.core.errors import InvalidArgumentError

__all__ = ["NotJSONError", "check_json", "dumps_strict", "loads_strict", "not_json_problem"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HINT = "is not JSON; send a number or null"


class NotJSONError(InvalidArgumentError, ValueError):
    """Text or data holds a value standard JSON cannot carry; the message names its path."""


class _Constant:
    """Stands in for a non-standard number while parsing, so its path can be found afterwards."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _describe(value: Any) -> str | None:
    """What is wrong with one leaf value, or None when JSON can carry it."""
    if isinstance(value, _Constant):
        if value.text in ("NaN", "Infinity", "-Infinity"):
            return f"{value.text} {_HINT}"
        return f"{value.text} is too large for a JSON number (it would be infinite); send a smaller number or null"
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return f"{shown} {_HINT}"
    if value is None or isinstance(value, str | bool | int | float):
        return None
    return f"a {type(value).__name__} is not JSON; send a string, number, boolean, null, list or object"


def not_json_problem(value: Any, root: str = "") -> str | None:
    """The first value JSON cannot carry, as ``path: what is wrong``, or None when all is JSON.
    ``root`` prefixes the path (e.g. ``data``)."""
    stack: list[tuple[str, Any]] = [(root, value)]
    seen: set[int] = set()
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict | list | tuple):
            if id(item) in seen:
                return f"{path or 'the value'}: contains itself; JSON cannot represent a cycle"
            seen.add(id(item))
        if isinstance(item, dict):
            for key in reversed(list(item)):
                if not isinstance(key, str):
                    return f"{path or 'the object'} has the key {key!r}; JSON object keys are strings"
                stack.append((_join(path, key), item[key]))
        elif isinstance(item, list | tuple):
            stack.extend((_join(path, index), element) for index, element in reversed(list(enumerate(item))))
        else:
            problem = _describe(item)
            if problem is not None:
                return f"{path or 'the value'}: {problem}"
    return None


def check_json(value: Any, root: str = "") -> None:
    """Raise :class:`NotJSONError` unless ``value`` is made only of what standard JSON carries."""
    problem = not_json_problem(value, root)
    if problem is not None:
        raise NotJSONError(problem)


def loads_strict(text: str | bytes | bytearray, root: str = "") -> Any:
    """``json.loads`` refusing ``NaN``, ``Infinity``, ``-Infinity`` and numbers that overflow to
    infinity, with the path in the error (:class:`NotJSONError`). Malformed text raises
    ``json.JSONDecodeError`` (a ValueError) as ``json.loads`` does. Costs nothing extra for
    standard text beyond a check of each float literal."""
    found: list[_Constant] = []

    def constant(text: str) -> _Constant:
        found.append(_Constant(text))
        return found[-1]

    def number(text: str) -> float | _Constant:
        parsed = float(text)
        return parsed if math.isfinite(parsed) else constant(text)

    value = json.loads(text, parse_constant=constant, parse_float=number)
    if found:
        raise NotJSONError(not_json_problem(value, root) or f"{found[0].text} {_HINT}")
    return value


def dumps_strict(value: Any, root: str = "") -> str:
    """Compact UTF-8 JSON text (no spaces, non-ASCII kept) that never holds a non-standard number:
    raises :class:`NotJSONError` naming the path instead."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise NotJSONError(not_json_problem(value, root) or f"{root or 'the value'} is not JSON: {exc}") from None
