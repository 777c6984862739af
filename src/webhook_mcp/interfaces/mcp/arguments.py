"""Argument errors in the project's words: one line naming the argument, what came and what to
send, worked out from the tool's own input schema so every tool says it the same way."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

_SHOWN = 40


def argument_error(tool: str, schema: dict[str, Any], exc: ValidationError) -> str:
    """``Error executing tool get_webhook: id got true; send a whole number from 1 to 2147483647
    (webhook id from list_webhooks)``."""
    problems: list[str] = []
    for error in exc.errors():
        problem = _problem(schema, error)
        if problem not in problems:
            problems.append(problem)
    # Worded like the SDK words every other tool error, so all of them read alike.
    return f"Error executing tool {tool}: " + "; ".join(problems)


def _problem(schema: dict[str, Any], error: Any) -> str:
    path = [part for part in error["loc"] if isinstance(part, int) or part in _names(schema, error["loc"])]
    name = str(path[0]) if path else "arguments"
    prop = schema.get("properties", {}).get(name, {})
    shown = name
    for index in path[1:]:
        shown += f"[{index}]"
        prop = prop.get("items", {}) if isinstance(prop, dict) else {}
    want = expected(prop)
    if error["type"] == "missing":
        return f"{shown} is required; send {want}"
    return f"{shown} got {_shown(error.get('input'))}; send {want}"


def _names(schema: dict[str, Any], loc: tuple[Any, ...]) -> set[str]:
    """Only the first string of a location is an argument; later ones name union branches."""
    first = next((part for part in loc if isinstance(part, str)), None)
    return {first} if first is not None else set()


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def expected(prop: dict[str, Any]) -> str:
    """What a value of this schema is, in words: ``a whole number from 1 to 100 (note)``."""
    kinds = prop.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    nullable = "null" in kinds
    kinds = [kind for kind in kinds if kind != "null"]
    if "enum" in prop:
        words = "one of " + ", ".join(json.dumps(option) for option in prop["enum"])
    elif kinds:
        words = _kind(kinds[0], prop)
    else:
        words = "a value"
    if nullable:
        words += ", or leave it out"
    note = prop.get("description")
    return f"{words} ({note.rstrip('.')})" if note else words


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _kind(kind: str, prop: dict[str, Any]) -> str:
    if kind in ("integer", "number"):
        words = "a whole number" if kind == "integer" else "a number"
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            return f"{words} from {_number(low)} to {_number(high)}"
        if low is not None:
            return f"{words} of at least {_number(low)}"
        return words
    if kind == "array":
        item = prop.get("items", {}).get("type")
        return "a list of text values" if item == "string" else "a list"
    return {"string": "text", "object": "a JSON object", "boolean": "true or false"}.get(kind, f"a {kind}")
