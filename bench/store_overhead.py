"""The dispatcher's cost without HTTP: deliveries through the real store and dispatcher with a
sender that answers 200 at once. Prints deliveries/s and CPU microseconds per delivery.

    .venv/bin/python bench/store_overhead.py [EVENTS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping

from webhook_mcp import Hub, Settings
from webhook_mcp.cli import run
from webhook_mcp.dispatcher import Dispatcher
from webhook_mcp.sender import SendOutcome


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


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory(prefix="webhook-store-bench-") as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db")
        async with Hub.open(settings, dispatch=False) as hub:
            await hub.service.create_webhook("https://example.com/hook", ["order.created"])
            example = hub.catalog.get("order.created").example
            for start in range(0, events, 1000):
                await hub.service.publish_many([("order.created", example, None)] * min(1000, events - start))
            sender = InstantSender(events)
            dispatcher = Dispatcher(hub.store, sender, settings)  # type: ignore[arg-type]
            cpu, wall = time.process_time(), time.perf_counter()
            task = asyncio.create_task(dispatcher.run())
            await asyncio.wait_for(sender.done.wait(), 300)
            task.cancel()  # finishes what is in flight and writes the last results
            await asyncio.gather(task, return_exceptions=True)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert dispatcher.delivered == events, dispatcher.delivered
    print(f"store + dispatcher only: {events / wall:,.0f} deliveries/s, {1e6 * cpu / events:.0f} us CPU per delivery")


if __name__ == "__main__":
    run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
