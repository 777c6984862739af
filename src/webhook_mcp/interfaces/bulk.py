"""``webhook-mcp publish --file events.ndjson``: one JSON event per line, published in batches.

A bad line is reported with its number and reason and the other lines still go in; with
idempotency keys, running the same file again publishes nothing twice."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from webhook_mcp.core.settings import Settings
from webhook_mcp.interfaces.tenant_cli import tenant_id_for
from webhook_mcp.service.hub import Hub
from webhook_mcp.service.operations import WebhookService


class FileError(Exception):
    """The file itself cannot be read; nothing was published."""


@dataclass
class Tally:
    published: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)

    def summary(self, source: str) -> str:
        text = f"{source}: {self.published} event(s) published, {self.duplicates} already published (duplicate key)"
        if self.bad:
            text += f", {len(self.bad)} bad line(s) not published (listed above); fix them and run the file again"
        return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


@contextlib.contextmanager
def _open(source: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if source == "-":
        yield sys.stdin.buffer, None
        return
    path = Path(source).expanduser()
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise FileError(f"cannot read --file {path}: {exc.strerror or exc}") from exc
    with stream:
        yield stream, os.fstat(stream.fileno()).st_size


async def _flush(service: WebhookService, batch: list[tuple[int, Any]], tally: Tally) -> None:
    outcome = await service.publish_valid([item for _number, item in batch])
    for index, problems in outcome.invalid.items():
        tally.bad.append((batch[index][0], "; ".join(problems)))
    for event in outcome.events:
        if event is not None:
            tally.duplicates += event.duplicate
            tally.published += not event.duplicate


async def publish_file(settings: Settings, source: str, batch_size: int, tenant: str | None = None) -> Tally:
    """Publish every valid line of ``source`` (a path, or - for stdin) in batches of ``batch_size``,
    for ``tenant`` (a name; None: the default tenant)."""
    err = Console(stderr=True)
    tally = Tally()
    with _open(source) as (stream, size):
        progress = Progress(
            TextColumn("publishing"),
            BarColumn(),
            MofNCompleteColumn() if size is None else TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
            transient=True,
        )
        async with Hub.open(settings, dispatch=False) as hub:
            tenant_id = await tenant_id_for(hub, tenant)
            service = hub.service if tenant_id is None else hub.service.for_tenant(tenant_id)
            with progress:
                task = progress.add_task("publishing", total=size)
                batch: list[tuple[int, Any]] = []
                for number, line in _lines(stream):
                    progress.advance(task, len(line) if size is not None else 1)
                    try:
                        batch.append((number, json.loads(line, parse_constant=_refuse_constant)))
                    except (ValueError, RecursionError) as exc:
                        tally.bad.append((number, f"not valid JSON: {exc}"))
                        continue
                    if len(batch) >= batch_size:
                        await _flush(service, batch, tally)
                        batch = []
                if batch:
                    await _flush(service, batch, tally)
    tally.bad.sort()
    for number, reason in tally.bad:
        print(f"webhook-mcp: line {number}: {reason}", file=sys.stderr)
    return tally
