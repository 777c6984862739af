"""The ``webhook-mcp`` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli as run
from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.cli import main
from webhook_mcp.storage.engine import head_revision


def test_help_lists_every_setting_and_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert f"WEBHOOK_MCP_{name.upper()}" in result.stdout
    for command in ("serve", "worker", "migrate", "publish", "claude-config"):
        assert command in result.stdout


def test_claude_config_is_a_ready_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    os.environ["WEBHOOK_MCP_DATABASE_URL"] = url
    try:
        assert main(["claude-config"]) == 0
    finally:
        del os.environ["WEBHOOK_MCP_DATABASE_URL"]
    entry = json.loads(capsys.readouterr().out)["mcpServers"]["webhook-mcp"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).exists()
    assert entry["args"] == ["serve"]
    assert entry["env"]["WEBHOOK_MCP_DATABASE_URL"] == url


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    target = tmp_path / "data" / "hooks.db"
    result = run("migrate", env={"WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{target}"})
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout and target.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEBHOOK_MCP_DELIVERY_TIMEOUT": "soon"}, "WEBHOOK_MCP_DELIVERY_TIMEOUT"),
        ({"WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "10.0.0.0/33"}, "CIDR"),
        ({"WEBHOOK_MCP_RETRY_SCHEDULE": "5,-1"}, "WEBHOOK_MCP_RETRY_SCHEDULE"),
        ({"WEBHOOK_MCP_LEASE_SECONDS": "5"}, "must be longer than delivery_timeout"),
        ({"WEBHOOK_MCP_DATABASE_URL": "mysql://root@localhost/x"}, "not supported"),
        ({"WEBHOOK_MCP_ALLOWED_HOSTS": "https://mcp.example.com"}, "WEBHOOK_MCP_ALLOWED_HOSTS"),
        ({"WEBHOOK_MCP_ALLOWED_ORIGINS": "https://app.example.com/path"}, "WEBHOOK_MCP_ALLOWED_ORIGINS"),
        ({"WEBHOOK_MCP_READ_ONLY": "perhaps"}, "WEBHOOK_MCP_READ_ONLY"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    result = run("migrate", env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_help() -> None:
    result = run()
    assert result.returncode == 2 and "serve" in result.stdout


def test_publish_reads_data_from_stdin(tmp_path: Path) -> None:
    from webhook_mcp.core.catalog import load_catalog

    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    example = json.dumps(load_catalog().get("customer.created").example)
    result = subprocess.run(
        [sys.executable, "-m", "webhook_mcp.interfaces.cli", "publish", "customer.created", "--data", "-"],
        input=example,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOK_MCP_DATABASE_URL": url},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("evt_") and "queued for 0 webhook(s)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["order.created", "--data", "@/nonexistent/order.json"], "cannot read --data file"),
        (["order.created", "--data", "[1, 2]"], "must hold a JSON object"),
        (["order.created", "--data", "[" * 5000 + "]" * 5000], "nests JSON too deeply"),
        (["order.created", "--data", '{"id": 5.5}'], "does not match its schema"),
        (["webhook.test", "--data", "{}"], "cannot be subscribed"),
        (["order.created", "--data", '{"extra": NaN}'], "--data is not valid JSON: data.extra: NaN is not JSON"),
        (["order.created", "--data", '{"a": [1e999]}'], "data.a[0]: 1e999 is too large for a JSON number"),
    ],
)
def test_publish_rejects_bad_input_before_touching_the_database(tmp_path: Path, args: list[str], message: str) -> None:
    database = tmp_path / "never.db"
    result = run("publish", *args, env={"WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{database}"})
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not database.exists()


def test_a_bad_token_is_refused_without_echoing_it() -> None:
    result = run("migrate", env={"WEBHOOK_MCP_API_TOKEN": "pass word\u00e9"})
    assert result.returncode == 2
    assert "WEBHOOK_MCP_API_TOKEN" in result.stderr and "printable ASCII" in result.stderr
    assert "pass word" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("transport", "host"), [("streamable-http", "0.0.0.0"), ("sse", "::"), ("sse", "192.0.2.7")])
def test_serve_refuses_a_non_loopback_bind_without_a_token(tmp_path: Path, transport: str, host: str) -> None:
    database = tmp_path / "never.db"
    env = {"WEBHOOK_MCP_DATABASE_URL": f"sqlite:///{database}", "WEBHOOK_MCP_API_TOKEN": ""}
    result = run("serve", "--transport", transport, "--host", host, "--port", "9", env=env)
    assert result.returncode == 2
    assert f"refusing to serve on {host} without a token" in result.stderr
    assert "WEBHOOK_MCP_API_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert not database.exists(), "the check must come before anything is opened or bound"


def test_serve_help_explains_the_http_safeguards() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Any other --host needs WEBHOOK_MCP_API_TOKEN" in text
    assert "every route (the MCP endpoints, POST /v1/events, /metrics) wants 'Authorization: Bearer <token>'" in text
    assert "/healthz and /readyz are open" in text
    assert "WEBHOOK_MCP_READ_ONLY=1 serves only the tools that change nothing" in text
    assert "turns POST /v1/events off" in text
