"""PostgreSQL's cost of recording delivery attempts, schema against a variant, batch by batch.

Two copies of the schema (as ``tables.py`` declares it) live in one scratch database; the variant
copy gets ``--variant-sql``. Batches of results are written with the dispatcher's own statement,
alternating between the copies, so the machine's drift (tens of percent within minutes here)
falls on both alike. Prints the median client-side time per attempt row for each copy.

    .venv/bin/python bench/attempt_write.py --variant-sql "ALTER TABLE delivery_attempts ADD CONSTRAINT
        fk_w FOREIGN KEY (webhook_id) REFERENCES webhooks(id); ALTER TABLE delivery_attempts ADD CONSTRAINT
        fk_d FOREIGN KEY (delivery_id) REFERENCES deliveries(id)"
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import psycopg
from delivery_throughput import scratch_database
from sqlalchemy import create_engine

from webhook_mcp.storage.schema import metadata
from webhook_mcp.storage.sql.postgresql import POSTGRES

WEBHOOKS = 8


def _results(first: int, count: int) -> str:
    return json.dumps(
        [
            {
                "webhook_id": 1 + i % WEBHOOKS,
                "delivery_id": i,
                "event_id": f"e{i}",
                "event_type": "order.created",
                "attempt_number": 1,
                "is_test": False,
                "created_at": 1e9 + i,
                "status_code": 200,
                "response_ms": 1.0,
                "success": True,
                "error": None,
                "response_excerpt": "ok",
                "next_state": "succeeded",
                "next_attempt_at": 1e9,
                "completed_at": 1e9,
            }
            for i in range(first, first + count)
        ]
    )


def _fill(conn: psycopg.Connection[Any], url: str, schema: str, deliveries: int) -> None:
    conn.execute(f"CREATE SCHEMA {schema}")
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"options": f"-csearch_path={schema}"}
    )
    metadata.create_all(engine)
    engine.dispose()
    conn.execute(f"SET search_path = {schema}")
    conn.execute(
        "INSERT INTO webhooks (url, events, secret, created_at, updated_at) "
        "SELECT 'https://example.com/hook', '[]', 'whsec_x', 0, 0 FROM generate_series(1, %s)",
        (WEBHOOKS,),
    )
    conn.execute(
        "INSERT INTO events (id, type, body, created_at) "
        "SELECT 'e' || g, 'order.created', repeat('x', 1000), 0 FROM generate_series(1, %s) AS g",
        (deliveries,),
    )
    conn.execute(
        "INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_attempt_at, created_at, updated_at) "
        "SELECT 1 + g %% %s, 'e' || g, 'pending', 0, g, 0, 0 FROM generate_series(1, %s) AS g",
        (WEBHOOKS, deliveries),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant-sql", required=True, help="DDL applied to the variant copy of the schema")
    parser.add_argument("--batches", type=int, default=120, help="batches per copy (default 120)")
    parser.add_argument("--batch-size", type=int, default=250, help="results per batch (default 250)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.database_url) as url, psycopg.connect(url, autocommit=True) as conn:
        for schema in ("schema", "variant"):
            _fill(conn, url, schema, args.batches * args.batch_size)
        conn.execute(args.variant_sql)
        conn.execute("ANALYZE")
        conn.execute("CHECKPOINT")
        conn.autocommit = False
        micros: dict[str, list[float]] = {"schema": [], "variant": []}
        for batch in range(args.batches):
            rows = _results(1 + batch * args.batch_size, args.batch_size)
            order = ("schema", "variant") if batch % 2 else ("variant", "schema")
            for schema in order:
                conn.execute(f"SET LOCAL search_path = {schema}")
                started = time.perf_counter()
                conn.execute(POSTGRES.log_attempts, {"rows": rows, "now": 1e9})
                conn.commit()
                micros[schema].append((time.perf_counter() - started) / args.batch_size * 1e6)
    for schema, times in micros.items():
        print(f"{schema:8s}: median {statistics.median(times):5.1f} us per attempt row ({len(times)} batches)")


if __name__ == "__main__":
    main()
