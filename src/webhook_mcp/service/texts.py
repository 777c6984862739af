"""Text rules every operation shares: what databases store and receivers get."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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
    return json.dumps(
        {"id": event_id, "type": event_type, "timestamp": timestamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )
