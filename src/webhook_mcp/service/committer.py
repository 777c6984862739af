"""Group commit: concurrent publishes in one process share transactions.

A publish that finds no commit running is committed at once (no added latency); whatever arrives
while a commit runs waits for it and then goes into the next one, together. Each caller still gets
exactly its own outcome: its events' results in order, or, if the shared transaction fails, the
error of its own transaction (the group is retried one caller at a time, so one caller's bad
luck is never another's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommitter(Generic[Item, Result]):
    """Feeds ``commit`` (one transaction over a list of items, one result per item, in order) with
    everything submitted since its previous call. Up to ``in_flight`` commits run at once: one
    where the database has one writer (SQLite), more where a commit mostly waits for the server
    (PostgreSQL), so a group gathers while the previous ones are being written."""

    def __init__(self, commit: Callable[[list[Item]], Awaitable[list[Result]]], *, in_flight: int = 1) -> None:
        self._commit = commit
        self._in_flight = max(1, in_flight)
        self._waiting: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        self._drainers: set[asyncio.Task[None]] = set()
        self.commits = 0

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """Commit ``items`` in the next transaction; once this returns they are durable."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if len(self._drainers) < self._in_flight:
            self._drainers.add(asyncio.create_task(self._drain(), name="webhook-mcp-group-commit"))
        return await future

    async def aclose(self) -> None:
        """Wait for the commits under way (called before the database closes)."""
        for task in list(self._drainers):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._commit_group(group)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._drainers.discard(task)
            if not self._drainers:
                for _items, future in self._waiting:
                    # Only reached if this task was cancelled while callers still waited.
                    if not future.done():
                        future.cancel()

    async def _commit_group(self, group: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]]) -> None:
        flat = [item for items, _future in group for item in items]
        try:
            results = await self._commit(flat)
        except asyncio.CancelledError:
            for _items, future in group:
                future.cancel()
            raise
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exception=exc)
                return
            logger.debug("a shared commit of %d publishes failed (%s); committing them one by one", len(group), exc)
            for items, future in group:
                await self._commit_alone(list(items), future)
            return
        self.commits += 1
        start = 0
        for items, future in group:
            _settle(future, results=results[start : start + len(items)])
            start += len(items)

    async def _commit_alone(self, items: list[Item], future: asyncio.Future[list[Result]]) -> None:
        try:
            results = await self._commit(items)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            _settle(future, exception=exc)
        else:
            self.commits += 1
            _settle(future, results=results)


def _settle(
    future: asyncio.Future[list[Result]],
    *,
    results: list[Result] | None = None,
    exception: BaseException | None = None,
) -> None:
    """Hand a caller its outcome, unless it stopped waiting (its request was cancelled): its
    events are committed all the same."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(results or [])
