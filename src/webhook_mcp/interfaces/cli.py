"""``webhook-mcp``: serve the MCP server, run a delivery worker, migrate, publish, print config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from webhook_mcp import __version__
from webhook_mcp.core.catalog import load_catalog
from webhook_mcp.core.errors import WebhookError
from webhook_mcp.core.jsonsafe import loads_strict
from webhook_mcp.core.logs import configure_logging
from webhook_mcp.core.settings import Settings, describe_settings
from webhook_mcp.core.tenancy import check_tenant_name
from webhook_mcp.interfaces import tenant_cli
from webhook_mcp.interfaces.console import resume_gc
from webhook_mcp.service.hub import Hub
from webhook_mcp.storage import engine as database

logger = logging.getLogger("webhook_mcp")
T = TypeVar("T")

EPILOG = f"""\
settings (environment variables):
{describe_settings()}

examples:
  webhook-mcp serve                                  MCP over stdio (what Claude Desktop runs)
  webhook-mcp serve --transport streamable-http      MCP at http://127.0.0.1:8000/mcp (+ POST /v1/events)
  webhook-mcp worker                                 a delivery worker on its own
  webhook-mcp publish order.created --data '{{"id": "ord_1", "total": 1999, "currency": "EUR"}}'
  webhook-mcp publish --file events.ndjson         one event per line, in batches (- reads stdin)
  webhook-mcp serve --tenant acme                    MCP over stdio for the tenant (shop) acme only
  webhook-mcp claude-config                          a claude_desktop_config.json entry for this install
  webhook-mcp tenants create acme                    another shop; then: webhook-mcp tokens issue acme
  WEBHOOK_MCP_API_TOKEN=... webhook-mcp serve --transport streamable-http --host 0.0.0.0

HTTP transports (sse, streamable-http) bind 127.0.0.1 by default. Any other --host needs
WEBHOOK_MCP_API_TOKEN, and with a token every route (the MCP endpoints, POST /v1/events, /metrics)
wants 'Authorization: Bearer <token>'; /healthz and /readyz are open, /ui/ signs in with the token
into a session cookie, and an inbox's /inbox/<id> is reached by its unguessable id. Host and Origin
headers are checked on every request (DNS-rebinding protection; WEBHOOK_MCP_ALLOWED_HOSTS and
WEBHOOK_MCP_ALLOWED_ORIGINS add to the bind address). A tenant's token (webhook-mcp tokens issue
TENANT) is accepted too and reaches that tenant's data only; /v1/tenants and /metrics are the admin
token's.
WEBHOOK_MCP_READ_ONLY=1 serves only the tools that change nothing (not get_webhook_secret either)
and turns POST /v1/events off.
"""


PUBLISH_EPILOG = """\
with --file, bad lines are reported by line number and the others are still published (exit
status 1 if any line was bad); give each line an idempotency_key so a rerun publishes nothing twice:
  webhook-mcp publish --file events.ndjson
  {"type": "order.created", "data": {"id": "ord_1", "total": 1999, "currency": "EUR"}, "idempotency_key": "ord_1"}
"""


class UsageError(Exception):
    """A command-line mistake: printed as is, exit status 2."""


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the MCP server (migrates the database, runs the dispatcher)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind for HTTP transports; anything but loopback needs WEBHOOK_MCP_API_TOKEN",
    )
    serve.add_argument("--port", type=int, default=8000, help="port for HTTP transports")
    serve.add_argument(
        "--no-dispatcher", action="store_true", help="do not deliver in this process (separate workers do)"
    )
    serve.add_argument(
        "--tenant",
        metavar="NAME",
        default=None,
        help="act for this tenant (shop) only: its webhooks, deliveries, logs and stats, and events published "
        "for it (default: WEBHOOK_MCP_TENANT; unset: every tenant)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-mcp",
        description="Self-hosted webhook management and delivery, driven by AI assistants over MCP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"webhook-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_serve(commands)

    worker = commands.add_parser("worker", help="run a delivery dispatcher on its own (several may share a database)")
    worker.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="serve /healthz, /readyz and /metrics on this port (default: WEBHOOK_MCP_WORKER_HTTP_PORT; off)",
    )
    worker.add_argument(
        "--http-host",
        default="127.0.0.1",
        help="address for --http-port; anything but loopback needs WEBHOOK_MCP_API_TOKEN (health stays open)",
    )
    commands.add_parser("migrate", help="bring the database schema up to date and exit")

    publish = commands.add_parser(
        "publish",
        help="publish an event (or a file of events) to every subscribed webhook",
        epilog=PUBLISH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.add_argument("event_type", metavar="EVENT_TYPE", nargs="?", help="e.g. order.created")
    publish.add_argument("--data", help="the event data: JSON text, @path/to/file.json, or - for stdin")
    publish.add_argument("--idempotency-key", default=None, help="the same key within 24 h publishes once")
    publish.add_argument(
        "--file", help='NDJSON: one {"type": ..., "data": {...}, "idempotency_key": ...} per line; - for stdin'
    )
    publish.add_argument("--batch-size", type=int, default=500, help="events per transaction with --file")
    tenant_cli.add_tenant_option(publish, "publish for this tenant (default: the default tenant)")

    config = commands.add_parser("claude-config", help="print a claude_desktop_config.json entry for this install")
    tenant_cli.add_tenant_option(config, "an entry that serves this tenant (shop) only")
    tenant_cli.add_commands(commands)
    return parser


def _read_data(spec: str) -> Any:
    if spec == "-":
        text, source = sys.stdin.read(), "stdin"
    elif spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --data file {path}: {exc.strerror or exc}") from exc
        source = str(path)
    else:
        text, source = spec, "--data"
    try:
        data = loads_strict(text, root="data")
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"{source} nests JSON too deeply; send a flatter object") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a JSON object (the event's data), not {type(data).__name__}")
    return data


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (it roughly halves the event loop's share of each
    delivery), else on the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from webhook_mcp.interfaces.lifecycle import run_worker

    port = args.http_port if args.http_port is not None else settings.worker_http_port
    if port is not None:
        if not 1 <= port <= 65535:
            raise UsageError(f"--http-port {port} is not a TCP port; give 1-65535")
        from webhook_mcp.interfaces.http.auth import check_bind

        check_bind(settings, args.http_host)
    run(run_worker(settings, args.http_host, port))


async def _publish(settings: Settings, event_type: str, data: Any, key: str | None, tenant: str | None) -> None:
    # Refuse bad input before the database is touched (or created).
    catalog = load_catalog(settings.event_types_file)
    kind = catalog.require_subscribable(event_type)
    if settings.event_validation == "reject":
        catalog.validate(kind.name, data)
    async with Hub.open(settings, dispatch=False) as hub:
        tenant_id = await tenant_cli.tenant_id_for(hub, tenant)
        service = hub.service if tenant_id is None else hub.service.for_tenant(tenant_id)
        published = await service.publish(event_type, data, key)
    note = " (duplicate idempotency key: the first event, nothing new queued)" if published.duplicate else ""
    print(f"{published.event_id} queued for {published.queued} webhook(s){note}")
    for warning in published.warnings:
        print(f"webhook-mcp: warning: {warning}", file=sys.stderr)


def _publish_file(settings: Settings, args: argparse.Namespace) -> int:
    from webhook_mcp.interfaces.bulk import FileError, publish_file

    if args.event_type is not None or args.data is not None or args.idempotency_key is not None:
        raise UsageError("--file takes each event's type, data and idempotency_key from its line; drop the others")
    if args.batch_size < 1 or args.batch_size > settings.max_batch_events:
        raise UsageError(
            f"--batch-size must be between 1 and {settings.max_batch_events} (WEBHOOK_MCP_MAX_BATCH_EVENTS)"
        )
    try:
        tally = run(publish_file(settings, args.file, args.batch_size, args.tenant))
    except FileError as exc:
        raise UsageError(str(exc)) from exc
    print(tally.summary("stdin" if args.file == "-" else args.file))
    return 1 if tally.bad else 0


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from webhook_mcp.interfaces import lifecycle

    dispatch = settings.run_dispatcher and not args.no_dispatcher
    if args.tenant is not None:
        settings = settings.model_copy(update={"tenant": check_tenant_name(args.tenant)})
    if args.transport == "stdio":
        run(lifecycle.serve_stdio(settings, dispatch))
    else:
        from webhook_mcp.interfaces.http.auth import check_bind

        check_bind(settings, args.host)
        run(lifecycle.serve_http(settings, args.transport, args.host, args.port, dispatch))


def _claude_config(settings: Settings, tenant: str | None) -> None:
    command = shutil.which("webhook-mcp") or str(Path(sys.argv[0]).resolve())
    entry = {
        "mcpServers": {
            "webhook-mcp" if tenant is None else f"webhook-mcp-{check_tenant_name(tenant)}": {
                "command": str(Path(command).resolve()),
                "args": ["serve"] if tenant is None else ["serve", "--tenant", tenant],
                "env": {"WEBHOOK_MCP_DATABASE_URL": settings.database_url},
            }
        }
    }
    print(json.dumps(entry, indent=2))


def _settings_error(exc: ValidationError) -> str:
    lines = ["invalid setting(s):"]
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            lines.append(f"  WEBHOOK_MCP_{str(error['loc'][0]).upper()}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = Settings()
        configure_logging(settings)
        if args.command != "serve" or args.transport != "stdio":
            resume_gc()  # the stdio server resumes it after its first answer
        if args.command == "serve":
            _serve(settings, args)
        elif args.command == "worker":
            _worker(settings, args)
        elif args.command == "migrate":
            database.upgrade(settings.database_url)
            print(f"database at {database.sync_url(settings.database_url)!r} is at revision {database.head_revision()}")
        elif args.command == "publish":
            if args.file is not None:
                return _publish_file(settings, args)
            if args.event_type is None or args.data is None:
                raise UsageError("publish needs EVENT_TYPE and --data (or --file events.ndjson)")
            data = _read_data(args.data)
            run(_publish(settings, args.event_type, data, args.idempotency_key, args.tenant))
        elif args.command == "claude-config":
            _claude_config(settings, args.tenant)
        elif args.command in ("tenants", "tokens"):
            tenant_cli.run_command(settings, args, run)
    except ValidationError as exc:
        print(f"webhook-mcp: {_settings_error(exc)}", file=sys.stderr)
        return 2
    except (UsageError, WebhookError) as exc:
        print(f"webhook-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
