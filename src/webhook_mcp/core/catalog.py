"""The shop's event types: what merchants can subscribe to and what each event's ``data`` looks like.

Built-in payloads are pydantic models (:mod:`.builtin_events`), read here from the JSON made from
them. Their published schemas describe rather than gate: a shop's own order (``{"id": "ord_1", "total":
1999}``) is accepted, only ``id`` is required. Operators add types, or redefine or drop the built-in
ones, in a JSON or YAML file (``WEBHOOK_MCP_EVENT_TYPES_FILE``); the schemas they write are enforced.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook_mcp.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidPayloadError,
    UnknownEventTypeError,
)

if TYPE_CHECKING:
    import jsonschema_rs
    import yaml
    from jsonschema import Draft202012Validator, FormatChecker

TEST_EVENT = "webhook.test"
CATALOG_FILE = Path(__file__).with_name("builtin_events.json")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class EventType:
    name: str
    group: str
    description: str
    schema: dict[str, Any] | None
    example: dict[str, Any]
    subscribable: bool = True
    builtin: bool = False


# --- format checking -------------------------------------------------------------------------------


def _is_datetime(value: object) -> bool:
    """jsonschema only checks date-time with an optional package; an assistant writing "yesterday"
    for ``created_at`` should still be told."""
    if not isinstance(value, str):
        return True
    if "T" not in value.upper() and " " not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# The validators are imported at the first check: a server that only lists webhooks never needs them.
@functools.cache
def _format_checker() -> FormatChecker:
    from jsonschema import FormatChecker

    checker = FormatChecker()
    checker.checks("date-time")(_is_datetime)
    return checker


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema, format_checker=_format_checker())


def _fast_validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """The publish path checks validity with the Rust validator (~100x faster); the Python one
    only words the errors, so both share the same format checks and messages stay the same."""
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, formats={"date-time": _is_datetime})


def _path_key(part: object) -> tuple[int, int, str]:
    return (0, part, "") if isinstance(part, int) else (1, 0, str(part))


def _format_path(parts: Iterable[object]) -> str:
    text = "data"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _problems(validator: Draft202012Validator, data: Any) -> list[str]:
    errors = list(validator.iter_errors(data))
    errors.sort(key=lambda e: ([_path_key(p) for p in e.absolute_path], e.message))
    return [f"{_format_path(e.absolute_path)}: {e.message}" for e in errors]


# --- built-in types ---------------------------------------------------------------------------------


@functools.cache
def _catalog_text() -> str:
    return CATALOG_FILE.read_text(encoding="utf-8")


_TEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "webhook_id": {"type": "integer"}},
}


def builtin_event_types() -> list[EventType]:
    """Fresh objects every call, so callers may not mutate a shared schema by accident."""
    types = [
        EventType(
            name=entry["name"],
            group=entry["name"].split(".", 1)[0],
            description=entry["description"],
            schema=entry["schema"],
            example=entry["example"],
            builtin=True,
        )
        for entry in json.loads(_catalog_text())
    ]
    types.append(
        EventType(
            name=TEST_EVENT,
            group="webhook",
            description="Sent only on demand by test_webhook to check that an endpoint receives and "
            "verifies deliveries; it carries no shop data and cannot be subscribed to.",
            schema=dict(_TEST_SCHEMA, properties=dict(_TEST_SCHEMA["properties"])),
            example={"message": "This is a test event from webhook-mcp.", "webhook_id": 1},
            subscribable=False,
            builtin=True,
        )
    )
    return types


# --- the catalog -----------------------------------------------------------------------------------


class Catalog:
    """Event types by name; validators are built lazily and kept per catalog, not per process."""

    def __init__(self, types: Iterable[EventType]) -> None:
        self._types: dict[str, EventType] = {}
        for event_type in types:
            if event_type.name in self._types:
                raise ConfigurationError(f"event type {event_type.name!r} is defined more than once")
            self._types[event_type.name] = event_type
        self._ordered = sorted(self._types.values(), key=lambda t: (t.group, t.name))
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast_validators: dict[str, jsonschema_rs.Draft202012Validator] = {}

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventTypeError(name, self.suggestions(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return [t.name for t in self._ordered]

    def subscribable(self) -> list[EventType]:
        return [t for t in self._ordered if t.subscribable]

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """Close spellings first; failing that, siblings in the same group ("order.foo" → order.*)."""
        names = self.names()
        wanted = name.strip().lower()
        import difflib

        close = difflib.get_close_matches(wanted, names, n=limit, cutoff=0.6)
        if close:
            return close
        prefix = wanted.split(".", 1)[0]
        return [n for n in names if n.split(".", 1)[0] == prefix][:limit]

    def require_subscribable(self, name: str) -> EventType:
        event_type = self.get(name)
        if not event_type.subscribable:
            raise InvalidArgumentError(
                f"event type {name!r} cannot be subscribed to: it is not emitted by the shop, "
                "test_webhook sends it on demand to one webhook. Subscribe to real event types "
                "(see get_webhook_events) and call test_webhook to try an endpoint."
            )
        return event_type

    def problems(self, name: str, data: Any) -> list[str]:
        """What in ``data`` its type's schema does not accept, each as "data.path: message"
        (empty when it conforms); an unknown type raises, with suggestions."""
        event_type = self.get(name)
        if not isinstance(data, dict):
            return ["data must be a JSON object"]
        if event_type.schema is None:
            return []
        fast = self._fast_validators.get(name)
        if fast is None:
            fast = self._fast_validators[name] = _fast_validator(event_type.schema)
        try:
            if fast.is_valid(data):
                return []
        except UnicodeEncodeError:
            return ["data contains an unpaired surrogate (e.g. '\\ud800'), which is not valid Unicode text"]
        validator = self._validators.get(name)
        if validator is None:
            validator = self._validators[name] = _validator(event_type.schema)
        return _problems(validator, data)

    def validate(self, name: str, data: Any) -> None:
        problems = self.problems(name, data)
        if problems:
            raise InvalidPayloadError(name, problems)


# --- the operator's file ---------------------------------------------------------------------------


@functools.cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """A loader that keeps unquoted dates as strings: JSON has no date type, and schemas say
    ``type: string``. (PyYAML is imported only when an operator's file is YAML.)"""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


_TOP_KEYS = {"event_types", "builtin_event_types"}
_ENTRY_KEYS = {"name", "description", "group", "schema", "example"}
_GROUP_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def _not_json(value: Any, where: str) -> str | None:
    """Where a YAML-only value (non-string key, set, binary…) hides; it could never be sent as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value}, which is not JSON; write a number or null"
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the non-string key {key!r} (quote it)"
            found = _not_json(item, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _not_json(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot represent (quote it)"


def _read_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in {".json", ".yaml", ".yml"}:
        raise ConfigurationError(
            f"event types file {path}: unsupported suffix {path.suffix or '(none)'!r}; use a .json, .yaml or .yml file"
        )
    if not path.is_file():
        raise ConfigurationError(
            f"event types file {path} does not exist or is not a file; "
            "fix WEBHOOK_MCP_EVENT_TYPES_FILE or create the file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"event types file {path} cannot be read as UTF-8 text: {exc}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"event types file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigurationError(f"event types file {path} is not valid YAML: {detail}") from None


def _schema_problem(schema: Any) -> str | None:
    """What is wrong with an operator's schema for an event type's data, if anything."""
    if not isinstance(schema, dict):
        return "'schema' must be a JSON Schema object (a mapping) describing data"
    problem = _not_json(schema, "schema")
    if problem:
        return problem
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        return f"'schema' is not a valid JSON Schema (draft 2020-12): schema{where}: {exc.message}"
    if schema.get("type", "object") != "object":
        return "'schema' must describe an object (type: object), because data is always a JSON object"
    return None


def _parse_entry(path: Path, index: int, entry: Any, taken: set[str]) -> EventType:
    label = f"event_types[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(
            f"event types file {path}: {label} must be a mapping with name and description, not {type(entry).__name__}"
        )
    raw_name = entry.get("name")
    label += f" ({raw_name!r})" if isinstance(raw_name, str) else " (no name)"

    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"event types file {path}: {label}: {problem}")

    unknown = sorted(str(key) for key in entry if key not in _ENTRY_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(sorted(_ENTRY_KEYS))}")
    if not isinstance(raw_name, str) or not raw_name:
        raise fail("'name' is required: a lower-case dotted name such as subscription.renewed")
    name = raw_name
    if not NAME_PATTERN.match(name):
        raise fail(
            "'name' must be lower-case dotted group.action (letters, digits, underscores), e.g. subscription.renewed"
        )
    if name in taken:
        raise fail(f"{name!r} is already defined earlier in the file; rename or remove one of them")
    if name == TEST_EVENT:
        raise fail(f"{name!r} is already defined: it is the built-in test event, which cannot be redefined")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail("'description' is required: one sentence saying when the shop sends this event")
    group = entry.get("group", name.split(".", 1)[0])
    if not isinstance(group, str) or not _GROUP_PATTERN.match(group):
        raise fail("'group' must be a lower-case word such as subscription (or leave it out)")
    schema = entry.get("schema")
    if schema is not None:
        problem = _schema_problem(schema)
        if problem:
            raise fail(problem)
    example = entry.get("example", {})
    if not isinstance(example, dict):
        raise fail("'example' must be an object (a mapping), the data of a typical event")
    problem = _not_json(example, "example")
    if problem:
        raise fail(problem)
    if schema is not None and "example" in entry:
        problems = _problems(_validator(schema), example)
        if problems:
            listed = "; ".join(p.replace("data", "example", 1) for p in problems[:5])
            raise fail(f"'example' does not match 'schema': {listed}")
    return EventType(
        name=name,
        group=group,
        description=description.strip(),
        schema=schema,
        example=example,
    )


def _load_file(path: Path) -> tuple[list[EventType], bool]:
    """The operator's types, and whether the built-in ones stay (``builtin_event_types: false``
    drops them, for shops that are not e-commerce shops)."""
    document = _read_file(path)
    if not isinstance(document, dict) or "event_types" not in document:
        raise ConfigurationError(
            f"event types file {path} must be a mapping with an 'event_types' list, "
            "e.g. event_types: [{name: subscription.renewed, description: ...}]"
        )
    unknown = sorted(str(key) for key in document if key not in _TOP_KEYS)
    if unknown:
        raise ConfigurationError(
            f"event types file {path}: unknown top-level key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    keep_builtins = document.get("builtin_event_types", True)
    if not isinstance(keep_builtins, bool):
        raise ConfigurationError(
            f"event types file {path}: 'builtin_event_types' must be true or false (false drops the shop types)"
        )
    entries = document["event_types"]
    if entries is None:
        return [], keep_builtins
    if not isinstance(entries, list):
        raise ConfigurationError(
            f"event types file {path}: 'event_types' must be a list of entries, not {type(entries).__name__}"
        )
    taken: set[str] = set()
    types: list[EventType] = []
    for index, entry in enumerate(entries):
        event_type = _parse_entry(path, index, entry, taken)
        taken.add(event_type.name)
        types.append(event_type)
    return types, keep_builtins


def load_catalog(extra_file: Path | None = None) -> Catalog:
    """Built-ins plus the operator's types, read afresh so edits apply on the next load. An
    operator's type named like a built-in one replaces it (schema, example, description)."""
    types = builtin_event_types()
    if extra_file is None:
        return Catalog(types)
    extra, keep_builtins = _load_file(Path(extra_file))
    redefined = {t.name for t in extra}
    kept = [t for t in types if t.name not in redefined and (keep_builtins or not t.subscribable)]
    return Catalog([*kept, *extra])
