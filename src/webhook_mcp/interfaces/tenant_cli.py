"""``webhook-mcp tenants ...`` and ``webhook-mcp tokens ...``: the operator's commands for tenants
(shops) and the tokens that reach one tenant's data."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from webhook_mcp.core.errors import InvalidArgumentError, WebhookError
from webhook_mcp.core.settings import Settings
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.tenants import TenantOperations

T = TypeVar("T")

TENANTS_EPILOG = """\
examples:
  webhook-mcp tenants create acme          a new tenant (shop); names: lower-case letters, digits, - and _
  webhook-mcp tenants list --json
  webhook-mcp tenants rename acme acme-eu
  webhook-mcp tenants delete acme --yes    its tokens stop at once, its data is removed in batches
"""

TOKENS_EPILOG = """\
examples:
  webhook-mcp tokens issue acme            prints a wmt_... token once: it reaches acme's data only
  webhook-mcp tokens list acme
  webhook-mcp tokens revoke 3              stops working within a few seconds on running servers
"""


def add_commands(commands: Any) -> None:
    """Register ``tenants`` and ``tokens`` on the main parser's sub-commands."""
    formatter = argparse.RawDescriptionHelpFormatter
    tenants = commands.add_parser(
        "tenants",
        help="create, list, rename or delete tenants (shops)",
        epilog=TENANTS_EPILOG,
        formatter_class=formatter,
    )
    actions = tenants.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("create", help="a new tenant").add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", help="every tenant")
    listing.add_argument("--json", action="store_true", help="print JSON")
    rename = actions.add_parser("rename", help="give a tenant another name (its tokens keep working)")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    delete = actions.add_parser("delete", help="delete a tenant and every webhook, event and delivery it has")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    tokens = commands.add_parser(
        "tokens", help="issue, list or revoke tenant tokens", epilog=TOKENS_EPILOG, formatter_class=formatter
    )
    token_actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    issue = token_actions.add_parser("issue", help="a new token for a tenant, printed once")
    issue.add_argument("tenant", metavar="TENANT")
    issue.add_argument("--label", default="", help="a note saying who holds the token")
    token_list = token_actions.add_parser("list", help="tokens (never the tokens themselves: their first characters)")
    token_list.add_argument("tenant", metavar="TENANT", nargs="?")
    token_list.add_argument("--json", action="store_true", help="print JSON")
    token_actions.add_parser("revoke", help="stop a token working").add_argument(
        "token_id", metavar="TOKEN_ID", type=int, help="its id, from 'webhook-mcp tokens list'"
    )


def add_tenant_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--tenant NAME`` on a command that acts for one tenant."""
    parser.add_argument("--tenant", metavar="NAME", default=None, help=help)


async def _with_operations(settings: Settings, work: Callable[[TenantOperations], Awaitable[T]]) -> T:
    async with Hub.open(settings, dispatch=False) as hub:
        return await work(TenantOperations(hub.store))


def _print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(empty)
        return
    widths = [max(len(column), *(len(str(row[column] or "")) for row in rows)) for column in columns]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        cells = (str(row[column] or "").ljust(width) for column, width in zip(columns, widths, strict=True))
        print("  ".join(cells).rstrip())


def _confirm_delete(name: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidArgumentError(f"refusing to delete tenant {name!r} without confirmation; add --yes")
    answer = input(f"Delete tenant {name!r} with all its webhooks, events and deliveries? Type its name to confirm: ")
    if answer.strip() != name:
        raise InvalidArgumentError(f"not confirmed; tenant {name!r} was not deleted")


async def _tenants(ops: TenantOperations, args: argparse.Namespace) -> None:
    if args.action == "create":
        created = await ops.create(args.name)
        hint = f"webhook-mcp tokens issue {created.name}"
        print(f"tenant {created.name!r} created (id {created.id}); give it a token: {hint}")
    elif args.action == "list":
        rows = [tenant.as_dict() for tenant in await ops.list_tenants()]
        _print_rows(rows, ["id", "name", "created_at"], args.json, "no tenants")
    elif args.action == "rename":
        renamed = await ops.rename(args.old, args.new)
        print(f"tenant {args.old!r} is now {renamed.name!r}")
    elif args.action == "delete":
        deleted = await ops.delete(args.name)
        print(f"tenant {deleted.name!r} deleted: its tokens no longer work and its webhooks deliver nothing more")
        removed = await ops.purge(deleted.id)
        print(f"removed its data: {removed} row(s)")


async def _tokens(ops: TenantOperations, args: argparse.Namespace) -> None:
    if args.action == "issue":
        issued = await ops.issue_token(args.tenant, args.label)
        print(issued.token)
        print(
            f"token {issued.info.id} for tenant {issued.info.tenant!r}: shown this once, store it now "
            "(send it as 'Authorization: Bearer <token>')",
            file=sys.stderr,
        )
    elif args.action == "list":
        rows = [token.as_dict() for token in await ops.list_tokens(args.tenant)]
        _print_rows(rows, ["id", "tenant", "hint", "label", "created_at"], args.json, "no tokens")
    elif args.action == "revoke":
        revoked = await ops.revoke_token(args.token_id)
        print(f"token {revoked.id} ({revoked.hint}) of tenant {revoked.tenant!r} revoked")


def run_command(settings: Settings, args: argparse.Namespace, run: Callable[[Any], Any]) -> None:
    """Run ``tenants ...`` or ``tokens ...``; a WebhookError (exit status 2) says what was wrong."""
    if args.command == "tenants" and args.action == "delete":
        _confirm_delete(args.name, args.yes)
    action = _tenants if args.command == "tenants" else _tokens

    async def work(ops: TenantOperations) -> None:
        await action(ops, args)

    run(_with_operations(settings, work))


async def tenant_id_for(hub: Hub, name: str | None) -> int | None:
    """The id of the tenant ``--tenant NAME`` names (None without one)."""
    if name is None:
        return None
    try:
        return int((await TenantOperations(hub.store).require(name)).id)
    except WebhookError as exc:
        raise InvalidArgumentError(f"--tenant: {exc}") from exc
