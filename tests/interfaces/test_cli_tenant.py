"""The command line's tenant options: documented in ``--help``, checked before anything starts."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli as run
from webhook_mcp.interfaces.cli import main


def test_serve_help_documents_tenant() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    assert "--tenant NAME" in result.stdout and "WEBHOOK_MCP_TENANT" in result.stdout


def test_a_bad_tenant_setting_is_a_clear_error() -> None:
    result = run("migrate", env={"WEBHOOK_MCP_TENANT": "Acme Shop"})
    assert result.returncode == 2
    assert "WEBHOOK_MCP_TENANT: tenant name 'Acme Shop' is not valid" in result.stderr
    assert "Traceback" not in result.stderr


def test_claude_config_for_a_tenant_serves_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["claude-config", "--tenant", "acme"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["mcpServers"].values()
    assert entry["args"] == ["serve", "--tenant", "acme"]
