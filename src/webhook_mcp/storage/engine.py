"""Engines and migrations: one place that knows which driver serves which URL."""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from webhook_mcp.core.errors import ConfigurationError
from webhook_mcp.storage.pipeline import IDLE_SLOTS

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

# The store runs each transaction whole on a thread, so it wants the synchronous drivers; URLs
# naming an async driver (sqlite+aiosqlite, postgresql+asyncpg) are mapped to these.
_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
READ_ONLY_OPTION = "webhook_mcp_read_only"
_MIGRATION_LOCK_ID = 0x77686D63  # "whmc": serialises concurrent `upgrade head` on PostgreSQL


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise ConfigurationError(
            f"WEBHOOK_MCP_DATABASE_URL {url!r} is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/dbname"
        ) from exc
    if parsed.get_backend_name() not in _DRIVERS:
        raise ConfigurationError(
            f"database {parsed.get_backend_name()!r} is not supported; use sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/dbname"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigurationError(
            "an in-memory SQLite database cannot be shared by the server and its dispatcher; "
            "use a file, e.g. sqlite:///./webhooks.db"
        )
    return parsed


def sync_url(url: str) -> URL:
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if "+" in parsed.drivername and parsed.get_driver_name() in ("pysqlite", "psycopg"):
        return parsed
    return parsed.set(drivername=f"{backend}+{_DRIVERS[backend]}")


def _sqlite_setup(engine: Engine) -> None:
    """WAL for readers beside one writer; BEGIN IMMEDIATE so two processes never deadlock
    upgrading a read lock, and a busy timeout so they queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads stay deferred: in WAL mode they never wait for a writer in another process.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY_OPTION) else "BEGIN IMMEDIATE")


def _ensure_sqlite_dir(parsed: URL) -> None:
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_sync(url: str, pool_size: int = 8) -> Engine:
    """``hide_parameters``: a database error's text never quotes the values, which include
    webhook secrets, so it can be logged and shown as it is."""
    parsed = sync_url(url)
    _ensure_sqlite_dir(parsed)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, hide_parameters=True)
        _sqlite_setup(engine)
        return engine
    # pre-ping replaces connections a PostgreSQL restart has cut, so the next transaction works.
    # The overflow is what the dispatcher's pipelined connections hold beside one per thread.
    return create_engine(parsed, pool_size=pool_size, max_overflow=IDLE_SLOTS, pool_pre_ping=True, hide_parameters=True)


def _alembic_config() -> Config:
    # Alembic is imported only when a migration may run: it is a third of a cold start.
    from alembic.config import Config

    config = Config()
    location = importlib.resources.files("webhook_mcp._migrations")
    config.set_main_option("script_location", str(location))
    return config


def head_revision() -> str | None:
    """The newest migration this code knows: read from the revision files' text when they declare
    one head (no Alembic import, which is a third of a cold start), else asked of Alembic."""
    declared = _declared_head()
    if declared is not None:
        return declared
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_sync(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


_REVISION = re.compile(r"^revision\b[^=]*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=]*=\s*[\"']([^\"']+)[\"']", re.M)


@functools.cache
def _declared_head() -> str | None:
    """The one head of the migration chain, read from the revision files' text (no Alembic
    import); None when the files do not declare exactly one, and Alembic must decide."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (importlib.resources.files("webhook_mcp._migrations") / "versions").iterdir():
        if not path.name.endswith(".py") or path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        if revision is None:
            return None
        revisions.add(revision.group(1))
        parents.update(_DOWN_REVISION.findall(source))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """One query: is the schema already at the newest revision? (Then nothing needs Alembic.)"""
    head = _declared_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            reading = conn.execution_options(**{READ_ONLY_OPTION: True})  # no write lock on SQLite
            stamped = [row[0] for row in reading.execute(text("SELECT version_num FROM alembic_version"))]
    except DBAPIError:
        return False  # no version table yet: a new database
    return stamped == [head]


def create_migration_engine(url: str) -> Engine:
    """An engine for migrations. On SQLite, foreign keys are off on its connections, as SQLite's
    own procedure for changing a table asks: a migration that rebuilds a table (the only way to
    drop a constraint there) would otherwise cascade the rebuild's DROP into the rows referencing
    it. ``check_foreign_keys`` verifies them afterwards."""
    engine = create_sync(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys = OFF")

    return engine


def check_foreign_keys(conn: Connection) -> None:
    """After a migration on SQLite: every reference still points at a row."""
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise ConfigurationError(f"the migration left {len(broken)} broken references, e.g. {tuple(broken[0])}")


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision; safe to run from several processes at once.
    A database already at the newest revision costs one query."""
    engine = create_migration_engine(url)
    try:
        if not at_head(engine):
            _alembic_upgrade(engine)
    finally:
        engine.dispose()


def _alembic_upgrade(engine: Engine) -> None:
    from alembic import command

    config = _alembic_config()
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            check_foreign_keys(conn)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"could not migrate the database at {engine.url!r}: {exc}") from exc
