"""Alembic environment: runs against the connection handed in by ``webhook_mcp.migrate`` or, when
``alembic`` is run by hand, against ``WEBHOOK_MCP_DATABASE_URL``."""

from __future__ import annotations

from alembic import context

from webhook_mcp.storage.schema import partial_indexes

config = context.config
target_metadata = partial_indexes()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from webhook_mcp.core.settings import Settings
    from webhook_mcp.storage.engine import check_foreign_keys, create_migration_engine

    engine = create_migration_engine(Settings().database_url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            check_foreign_keys(conn)
    engine.dispose()


run_migrations_online()
