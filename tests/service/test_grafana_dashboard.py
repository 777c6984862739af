"""The Grafana dashboard in docs/grafana asks only for metrics (and label values) this service
exports, so it cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_settings
from webhook_mcp import Hub
from webhook_mcp.service.monitoring import Monitor

pytestmark = pytest.mark.anyio

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "webhook-mcp.json"
METRIC = re.compile(r"\b(webhook_mcp_[a-z0-9_]+)(\{[^}]*\})?")
LABEL = re.compile(r'([a-z_]+)\s*=\s*"([^"]*)"')
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def queries(panels: list[dict[str, Any]]) -> list[str]:
    found = []
    for panel in panels:
        found += [target["expr"] for target in panel.get("targets", [])]
        found += queries(panel.get("panels", []))
    return found


async def exposed(sqlite_url: str) -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    """Series names a real process exports (with the queue's gauges) by metric family, and its
    (series, label, value)s."""
    async with Hub.open(make_settings(sqlite_url), dispatch=True) as hub:
        text = (await Monitor(hub, cache_seconds=0).exposition()).decode()
    families: dict[str, set[str]] = {}
    labels: set[tuple[str, str, str]] = set()
    for family in text_string_to_metric_families(text):
        series = families[family.name] = {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            series.add(sample.name)
            labels |= {(sample.name, key, value) for key, value in sample.labels.items()}
    return families, labels


async def test_every_dashboard_query_uses_exported_metrics(sqlite_url: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = queries(dashboard["panels"])
    assert len(exprs) >= 12
    families, labels = await exposed(sqlite_url)
    names = set().union(*families.values())
    used = set()
    for expr in exprs:
        matches = METRIC.findall(expr)
        assert matches, f"query without a webhook_mcp metric: {expr}"
        for name, selector in matches:
            assert name in names, f"{name} (in {expr!r}) is not exported"
            used.add(name)
            for key, value in LABEL.findall(selector):
                assert (name, key, value) in labels, f"{name}{{{key}={value!r}}} is never exported"
    # And every metric of ours is on the dashboard.
    ours = {name: series for name, series in families.items() if name.startswith("webhook_mcp_")}
    unused = sorted(name for name, series in ours.items() if not name.endswith("_created") and not series & used)
    assert unused == []
