"""Strict JSON: what Python's json module would read or write but RFC 8259 has no spelling for."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.core.jsonsafe import NotJSONError, check_json, dumps_strict, loads_strict, not_json_problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "the value: NaN is not JSON; send a number or null"),
        ('{"data": {"extra": NaN}}', "data.extra: NaN is not JSON; send a number or null"),
        ('{"a": [1, {"b": Infinity}]}', "a[1].b: Infinity is not JSON"),
        ('{"a b": {"c": -Infinity}}', '["a b"].c: -Infinity is not JSON'),
        ("[0, 1e999]", "[1]: 1e999 is too large for a JSON number (it would be infinite)"),
        ('{"x": -1E+400}', "x: -1E+400 is too large for a JSON number"),
    ],
)
def test_loads_strict_names_the_path_of_a_non_standard_number(text: str, message: str) -> None:
    json.loads(text)  # the lax parser takes it
    with pytest.raises(NotJSONError) as info:
        loads_strict(text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, InvalidArgumentError) and isinstance(info.value, ValueError)


def test_loads_strict_prefixes_the_root_and_reads_standard_json_unchanged() -> None:
    with pytest.raises(NotJSONError, match=r"^data\.x: NaN"):
        loads_strict('{"x": NaN}', root="data")
    text = '{"a": [1, 2.5, -0.0, 1e308, "NaN", null, true], "b": {"c": "Infinity"}}'
    assert loads_strict(text) == json.loads(text)
    assert loads_strict(text.encode()) == json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_strict("{not json")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": math.nan}, "data.x: NaN is not JSON"),
        ({"x": [math.inf]}, "data.x[0]: Infinity is not JSON"),
        ({"x": {"y": -math.inf}}, "data.x.y: -Infinity is not JSON"),
        ({"x": b"bytes"}, "data.x: a bytes is not JSON"),
        ({1: 2}, "data has the key 1; JSON object keys are strings"),
    ],
)
def test_check_json_and_dumps_strict_refuse_what_json_cannot_carry(value: dict[Any, Any], message: str) -> None:
    assert not_json_problem(value, "data") is not None and message in str(not_json_problem(value, "data"))
    with pytest.raises(NotJSONError) as info:
        check_json(value, "data")
    assert message in str(info.value)


def test_dumps_strict_never_writes_a_non_standard_number() -> None:
    with pytest.raises(NotJSONError, match=r"^data\.extra: NaN is not JSON"):
        dumps_strict({"data": {"extra": math.nan}})
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(NotJSONError, match="cycle"):
        dumps_strict({"data": looped})
    assert dumps_strict({"a": [1, 2.5], "é": None}) == '{"a":[1,2.5],"é":null}'
    check_json({"a": [1, 2.5, None, True, "x"], "b": {}})
