"""``webhook-mcp publish --file``: NDJSON events published in batches, bad lines reported by number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from webhook_mcp.storage import engine as database
from webhook_mcp.storage.schema import events

LINES = [
    json.dumps(
        {"type": "order.created", "data": {"id": "ord_1", "total": 1999, "currency": "EUR"}, "idempotency_key": "o1"}
    ),
    json.dumps({"type": "order.created", "data": {"id": 2}, "idempotency_key": "o2"}),
    "{not json",
    json.dumps({"type": "order.craeted", "data": {"id": 3}}),
    "",
    json.dumps({"type": "order.created", "data": {"total": 1}}),
    json.dumps({"type": "customer.created", "data": {"id": 4}, "idempotency_key": "c4"}),
]


def publish(database_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook_mcp.interfaces.cli", "publish", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={**os.environ, "WEBHOOK_MCP_DATABASE_URL": database_url, "WEBHOOK_MCP_LOG_LEVEL": "WARNING"},
    )


def stored(database_url: str) -> int:
    engine = database.create_sync(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(events)) or 0)
    finally:
        engine.dispose()


def test_a_file_goes_in_except_its_bad_lines_and_a_rerun_adds_nothing(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    first = publish(database_url, "--file", str(path), "--batch-size", "2")
    assert first.returncode == 1, first.stderr
    assert "3 event(s) published, 0 already published" in first.stdout
    assert "3 bad line(s) not published" in first.stdout
    reported = [line for line in first.stderr.splitlines() if line.startswith("webhook-mcp: line ")]
    assert reported[0].startswith("webhook-mcp: line 3: not valid JSON")
    assert reported[1].startswith("webhook-mcp: line 4: type: unknown event type 'order.craeted'. Did you mean")
    assert reported[2] == "webhook-mcp: line 6: data: 'id' is a required property"
    assert stored(database_url) == 3

    again = publish(database_url, "--file", "-", stdin="\n".join(LINES[:2] + LINES[6:]) + "\n")
    assert again.returncode == 0, again.stderr
    assert "stdin: 0 event(s) published, 3 already published" in again.stdout
    assert stored(database_url) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "/nonexistent/events.ndjson"], "cannot read --file"),
        (["order.created", "--file", "x.ndjson"], "drop the others"),
        (["--file", "x.ndjson", "--batch-size", "0"], "--batch-size must be between 1 and"),
        ([], "publish needs EVENT_TYPE and --data"),
    ],
)
def test_file_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = publish(f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
