"""The one store object the service and the dispatcher use: every concern's queries composed on
one engine. Each concern lives in its own module; the SQL that differs between PostgreSQL and
SQLite lives in ``storage.sql.postgresql`` and ``storage.sql.sqlite``."""

from __future__ import annotations

from webhook_mcp.storage.dashboard import DashboardQueries
from webhook_mcp.storage.events import EventQueries
from webhook_mcp.storage.liveness import LivenessQueries
from webhook_mcp.storage.logs import LogQueries
from webhook_mcp.storage.monitoring import MonitoringQueries
from webhook_mcp.storage.purge import PurgeQueries
from webhook_mcp.storage.queue import QueueQueries
from webhook_mcp.storage.results import ResultQueries
from webhook_mcp.storage.retention import RetentionQueries
from webhook_mcp.storage.tenants import TenantQueries
from webhook_mcp.storage.tokens import TokenQueries
from webhook_mcp.storage.webhooks import WebhookQueries


class Store(
    WebhookQueries,
    EventQueries,
    QueueQueries,
    ResultQueries,
    LogQueries,
    DashboardQueries,
    RetentionQueries,
    MonitoringQueries,
    LivenessQueries,
    TenantQueries,
    TokenQueries,
    PurgeQueries,
):
    """Tenants and their tokens, webhooks and secrets, events and idempotency, the delivery queue,
    results, logs and stats."""
