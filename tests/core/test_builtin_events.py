"""The built-in event catalog the server reads is the one its models make."""

from __future__ import annotations

from webhook_mcp.core.builtin_events import builtin_entries, catalog_text
from webhook_mcp.core.catalog import CATALOG_FILE, builtin_event_types


def test_catalog_file_is_up_to_date() -> None:
    assert CATALOG_FILE.read_text(encoding="utf-8") == catalog_text(), (
        "builtin_events.json is out of date: run .venv/bin/python scripts/build_event_catalog.py"
    )


def test_loaded_types_are_the_models() -> None:
    loaded = {t.name: (t.description, t.schema, t.example) for t in builtin_event_types() if t.subscribable}
    made = {e["name"]: (e["description"], e["schema"], e["example"]) for e in builtin_entries()}
    assert loaded == made
