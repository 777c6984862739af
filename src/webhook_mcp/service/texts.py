"""Text rules every operation shares: what databases store and receivers get."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.core.jsonsafe import dumps_strict


def check_text(name: str, value: str) -> str:
    """Text every database stores and every HTTP library sends: no NUL, no unpaired surrogate."""
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} contains a NUL character (\\x00); remove it")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{name} contains {value[exc.start]!r}, an unpaired surrogate that is not valid Unicode; send UTF-8 text"
        ) from exc
    return value


_last_timestamp: tuple[float, str] = (0.0, "1970-01-01T00:00:00.000Z")


def _timestamp(created_at: float) -> str:
    """ISO 8601 in UTC to the millisecond; the events of one batch share theirs, formatted once."""
    global _last_timestamp
    if _last_timestamp[0] != created_at:
        formatted = datetime.fromtimestamp(created_at, UTC).isoformat(timespec="milliseconds")
        _last_timestamp = (created_at, formatted.replace("+00:00", "Z"))
    return _last_timestamp[1]


def envelope(event_id: str, event_type: str, created_at: float, data: dict[str, Any]) -> str:
    """The body every receiver gets; serialised once, so retries send byte-identical bodies.
    Strict: a NaN or Infinity would make the body unreadable to every standard JSON parser."""
    document = {"id": event_id, "type": event_type, "timestamp": _timestamp(created_at), "data": data}
    try:
        # orjson writes the same compact UTF-8 JSON several times faster than json does.
        written = orjson.dumps(document)
    except TypeError:
        written = b"null"  # what orjson refuses (integers beyond 64 bits, unpaired surrogates)
    if b"null" in written:
        # orjson writes NaN and Infinity as null: a body with a null (or one orjson refused)
        # takes the strict path, which names a NaN's path and writes big integers in full.
        return dumps_strict(document)
    return written.decode()
