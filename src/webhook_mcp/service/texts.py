"""Text rules every operation shares: what databases store and receivers get."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_mcp.core.errors import InvalidArgumentError


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


def envelope(event_id: str, event_type: str, created_at: float, data: dict[str, Any]) -> str:
    """The body every receiver gets; serialised once, so retries send byte-identical bodies."""
    timestamp = datetime.fromtimestamp(created_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {"id": event_id, "type": event_type, "timestamp": timestamp, "data": data}
    try:
        # orjson writes the same compact UTF-8 JSON several times faster than json does.
        return orjson.dumps(document).decode()
    except TypeError:
        # What orjson refuses (integers beyond 64 bits, unpaired surrogates) gets json's
        # treatment: the integer written in full, the surrogate refused by the size check.
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
