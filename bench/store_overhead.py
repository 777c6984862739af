"""The dispatcher's cost without HTTP: deliveries through the real store and dispatcher with a
sender that answers 200 at once. Prints deliveries/s and CPU microseconds per delivery, beside a
fixed pure-Python workload timed in the same run, because this machine's speed drifts by tens of
percent within an hour: compare runs by the ratio, not by the raw figure.

    .venv/bin/python bench/store_overhead.py [--events N] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Mapping

from delivery_throughput import analyze, calibration_ms, postgres_cpu_seconds, scratch_database

from webhook_mcp import Hub, Settings
from webhook_mcp.delivery.dispatcher import Dispatcher
from webhook_mcp.delivery.sender import SendOutcome
from webhook_mcp.interfaces.cli import run


class InstantSender:
    def __init__(self, expected: int) -> None:
        self.sent = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        await asyncio.sleep(0)
        self.sent += 1
        if self.sent >= self.expected:
            self.done.set()
        return SendOutcome(True, 200, 1.0, None, "ok", None)

    async def aclose(self) -> None:
        return None


async def measure(database_url: str, events: int) -> tuple[float, float, float]:
    settings = Settings(database_url=database_url)
    async with Hub.open(settings, dispatch=False) as hub:
        await hub.service.create_webhook("https://example.com/hook", ["order.created"])
        example = hub.catalog.get("order.created").example
        for start in range(0, events, 1000):
            await hub.service.publish_many([("order.created", example, None)] * min(1000, events - start))
        await asyncio.to_thread(analyze, hub.store.engine)
        sender = InstantSender(events)
        dispatcher = Dispatcher(hub.store, sender, hub.settings)  # type: ignore[arg-type]
        cpu, wall, postgres = time.process_time(), time.perf_counter(), postgres_cpu_seconds()
        task = asyncio.create_task(dispatcher.run())
        await asyncio.wait_for(sender.done.wait(), 300)
        task.cancel()  # finishes what is in flight and writes the last results
        with contextlib.suppress(asyncio.CancelledError):
            await task
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        postgres = postgres_cpu_seconds() - postgres
        assert dispatcher.delivered == events, dispatcher.delivered
    return events / wall, 1e6 * cpu / events, 1e6 * postgres / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with scratch_database(args.database_url) as database_url:
        rate, cpu_us, postgres_us = run(measure(database_url, args.events))
    calibration = calibration_ms()
    backend = "postgresql" if args.database_url and args.database_url.startswith("postgres") else "sqlite"
    print(
        f"store + dispatcher only ({backend}): {rate:,.0f} deliveries/s, {cpu_us:.0f} us CPU per delivery"
        + (f" + {postgres_us:.0f} us in PostgreSQL" if backend == "postgresql" else "")
        + f" (calibration loop {calibration:.1f} ms)"
    )


if __name__ == "__main__":
    main()
