"""Log output for the command line: one line per fact, as readable text or as one JSON object per
line (``WEBHOOK_MCP_LOG_FORMAT=json``) carrying the webhook, delivery and event ids passed with
``extra=`` where a record concerns one."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from webhook_mcp.core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ALEMBIC = "alembic.runtime.migration"


class MigrationLines(logging.Filter):
    """Alembic logs each migration's whole docstring, over several lines, and two lines of
    internals per run: keep one line per migration applied, named by its docstring's title."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Running upgrade"):
            return record.levelno >= logging.WARNING
        steps, _, doc = message.removeprefix("Running upgrade").partition(",")
        title = doc.strip().splitlines()[0].split(":")[0].rstrip(".") if doc.strip() else ""
        record.msg = f"migrating the database schema {steps.strip()}" + (f" ({title})" if title else "")
        record.args = ()
        return True


def log_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr: stdout carries MCP over stdio) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every record of the process through one ``log_handler``."""
    handler = log_handler(settings, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    migration = logging.getLogger(_ALEMBIC)
    if not any(isinstance(f, MigrationLines) for f in migration.filters):
        migration.addFilter(MigrationLines())
    # Alembic announces each of its plugins at INFO on every migration: not a fact about this service.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
