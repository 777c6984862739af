"""``webhook-mcp tenants`` and ``webhook-mcp tokens`` as an operator runs them, and
``publish --tenant``: readable output, and one line with exit status 2 for every mistake."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest

from webhook_mcp.interfaces.cli import main

pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def database(database_url: str) -> Iterator[str]:
    os.environ["WEBHOOK_MCP_DATABASE_URL"] = database_url
    os.environ["WEBHOOK_MCP_LOG_LEVEL"] = "WARNING"
    try:
        yield database_url
    finally:
        del os.environ["WEBHOOK_MCP_DATABASE_URL"], os.environ["WEBHOOK_MCP_LOG_LEVEL"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_tenants_are_created_listed_renamed_and_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "tenants", "create", "acme")
    assert status == 0 and "tenant 'acme' created" in out and "webhook-mcp tokens issue acme" in out
    status, out, _ = cli(capsys, "tenants", "list")
    assert status == 0 and out.splitlines()[0].split() == ["ID", "NAME", "CREATED_AT"] and "acme" in out
    assert cli(capsys, "tenants", "rename", "acme", "acme-eu")[0] == 0
    status, out, _ = cli(capsys, "tenants", "list", "--json")
    assert [t["name"] for t in json.loads(out)] == ["default", "acme-eu"]
    status, out, _ = cli(capsys, "tenants", "delete", "acme-eu", "--yes")
    assert status == 0 and "tenant 'acme-eu' deleted" in out and "removed its data" in out
    assert [t["name"] for t in json.loads(cli(capsys, "tenants", "list", "--json")[1])] == ["default"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenants", "create", "Acme Shop"], "tenant name 'Acme Shop' is not valid"),
        (["tenants", "rename", "nobody", "x"], "no tenant named 'nobody'; run 'webhook-mcp tenants list'"),
        (["tenants", "delete", "default", "--yes"], "the 'default' tenant cannot be deleted"),
        (["tenants", "delete", "nobody", "--yes"], "no tenant named 'nobody'"),
        (["tokens", "issue", "nobody"], "no tenant named 'nobody'"),
        (["tokens", "revoke", "99"], "no token with id 99"),
        (["publish", "order.created", "--data", '{"id": "o1"}', "--tenant", "nobody"], "--tenant: no tenant named"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    status, _, err = cli(capsys, *args)
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_taken_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "tenants", "create", "acme")
    status, _, err = cli(capsys, "tenants", "create", "acme")
    assert status == 2 and "'acme' exists already" in err


def test_delete_asks_on_a_terminal_and_refuses_without_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(capsys, "tenants", "create", "acme")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    status, _, err = cli(capsys, "tenants", "delete", "acme")
    assert status == 2 and "refusing to delete tenant 'acme' without confirmation; add --yes" in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("nope\n"))
    status, _, err = cli(capsys, "tenants", "delete", "acme")
    assert status == 2 and "not confirmed; tenant 'acme' was not deleted" in err
    monkeypatch.setattr("sys.stdin", Terminal("acme\n"))
    assert cli(capsys, "tenants", "delete", "acme")[0] == 0


def test_tokens_are_issued_once_listed_by_hint_and_revoked(capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "tenants", "create", "acme")
    status, out, err = cli(capsys, "tokens", "issue", "acme", "--label", "storefront")
    token = out.strip()
    assert status == 0 and token.startswith("wmt_") and "shown this once" in err
    status, out, _ = cli(capsys, "tokens", "list", "acme", "--json")
    [listed] = json.loads(out)
    assert listed["hint"] == token[:12] + "…" and listed["label"] == "storefront" and token not in out
    status, out, _ = cli(capsys, "tokens", "revoke", str(listed["id"]))
    assert status == 0 and "revoked" in out
    assert cli(capsys, "tokens", "list")[1].strip() == "no tokens"


def test_publish_for_a_tenant_reaches_its_webhooks_only(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from webhook_mcp import Hub, Settings

    async def register() -> None:
        async with Hub.open(Settings(), dispatch=False) as hub:
            acme = await hub.store.find_tenant("acme")
            assert acme is not None
            await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", ["order.created"])

    cli(capsys, "tenants", "create", "acme")
    asyncio.run(register())
    status, out, _ = cli(capsys, "publish", "order.created", "--data", '{"id": "o1"}', "--tenant", "acme")
    assert status == 0 and "queued for 1 webhook(s)" in out
    status, out, _ = cli(capsys, "publish", "order.created", "--data", '{"id": "o1"}')
    assert status == 0 and "queued for 0 webhook(s)" in out
