"""The settings table in docs/settings.md lists every setting, so the docs cannot fall behind."""

from __future__ import annotations

from pathlib import Path

from webhook_mcp.core.settings import Settings, describe_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_has_a_row_in_the_docs() -> None:
    rows = {line.split("|")[1].strip().strip("`") for line in DOCS.read_text().splitlines() if line.startswith("| `")}
    expected = {f"WEBHOOK_MCP_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - rows) == []
    assert sorted(rows - expected) == []


def test_help_describes_every_setting() -> None:
    described = describe_settings()
    for name, field in Settings.model_fields.items():
        assert f"WEBHOOK_MCP_{name.upper()}" in described
        assert field.description, f"{name} needs a description for --help"
