"""Lean JSON Schemas for ``tools/list``: every tool's schemas travel in each conversation's
context, so they say the shape once and nothing else (no titles, ``null`` folded into ``type``)."""

from __future__ import annotations

from typing import Any

_DROPPED = frozenset({"title"})


def compact(schema: Any) -> Any:
    """The same schema (it validates exactly the same documents) in fewer characters."""
    if isinstance(schema, list):
        return [compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED and not isinstance(value, dict):
            continue
        if key == "properties" or key == "$defs":
            out[key] = {name: compact(sub) for name, sub in value.items()}
        else:
            out[key] = compact(value)
    out = _fold_nullable(out)
    if out.get("default", 0) is None:
        del out["default"]  # optional already says it; null is what "not given" means
    return out


def _fold_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{type: T, ...}, {type: null}]`` becomes ``type: [T, null]`` when nothing else
    is at stake; ``default: null`` on an output adds nothing an assistant can use."""
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = options[0] if options[1] == {"type": "null"} else options[1]
        kind = other.get("type") if isinstance(other, dict) else None
        if isinstance(kind, str) and "$ref" not in other:
            merged = {key: value for key, value in schema.items() if key != "anyOf"}
            merged.update(other)
            merged["type"] = [kind, "null"]
            schema = merged
    return schema


_OUTPUT_NOISE = frozenset({"default", "description", "format"})


def output_shape(schema: dict[str, Any]) -> dict[str, Any]:
    """Output schemas keep names, types and what is always there: a ``default`` says nothing
    about a result, times are ISO 8601 strings named *_at, nullable fields say so in their type
    (so ``required`` adds nothing an assistant reads), and what fields mean is taught once, in
    the tool descriptions."""
    if "properties" in schema:
        schema["properties"] = {
            name: {key: value for key, value in sub.items() if key not in _OUTPUT_NOISE}
            for name, sub in schema["properties"].items()
        }
    schema.pop("required", None)
    for definition in schema.get("$defs", {}).values():
        output_shape(definition)
    return schema
