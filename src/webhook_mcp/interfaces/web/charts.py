"""Hourly charts as inline SVG drawn on the server: no script, no external library, readable
offline. Each hour is a column with a tooltip (an SVG ``<title>``) giving its exact numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from webhook_mcp.service.dashboard import HourPoint

WIDTH = 960
HEIGHT = 190
LEFT = 56
RIGHT = 12
TOP = 12
BOTTOM = 26


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str  # class of the line: its colour comes from the stylesheet
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (axis tops)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _hour_label(hour: float) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%a %d %b %H:00 UTC")


class _Frame:
    """Coordinates for ``count`` hourly columns under a y axis from 0 to ``top``."""

    def __init__(self, count: int, top: float) -> None:
        self.count = count
        self.top = top
        self.column = (WIDTH - LEFT - RIGHT) / max(count, 1)

    def x(self, index: int) -> float:
        return LEFT + index * self.column

    def y(self, value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(value, self.top) / self.top)

    def axes(self, points: Sequence[HourPoint], label: Callable[[float], str]) -> list[str]:
        parts = []
        for fraction in (0.0, 0.5, 1.0):
            value = self.top * fraction
            y = self.y(value)
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label(value)}</text>')
        for index, point in enumerate(points):
            moment = datetime.fromtimestamp(point.hour, UTC)
            if moment.hour == 0:
                x = self.x(index)
                parts.append(f'<line class="day" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
                parts.append(
                    f'<text class="axis" x="{x + 3:.1f}" y="{HEIGHT - 8}">{moment.strftime("%a %d %b")}</text>'
                )
        return parts

    def tooltips(self, points: Sequence[HourPoint], describe: Callable[[HourPoint], str]) -> list[str]:
        """A transparent column per hour whose tooltip tells that hour's numbers."""
        return [
            f'<rect class="hover" x="{self.x(i):.1f}" y="{TOP}" width="{self.column:.2f}" '
            f'height="{HEIGHT - TOP - BOTTOM}"><title>{escape(_hour_label(p.hour) + ": " + describe(p))}</title></rect>'
            for i, p in enumerate(points)
        ]


def _svg(title: str, parts: Sequence[str], legend: Sequence[tuple[str, str]]) -> Markup:
    keys = "".join(f'<span class="key {css}">{escape(name)}</span>' for name, css in legend)
    return Markup(
        f'<figure class="chart"><figcaption>{escape(title)}<span class="legend">{keys}</span></figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>'
        "</figure>"
    )


def _count(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def attempts_chart(points: Sequence[HourPoint]) -> Markup:
    """Attempts per hour: succeeded and failed stacked."""
    frame = _Frame(len(points), nice_ceiling(max((p.attempts for p in points), default=0)))
    parts = frame.axes(points, _count)
    gap = min(1.0, frame.column * 0.2)
    for index, point in enumerate(points):
        if not point.attempts:
            continue
        x, width = frame.x(index) + gap / 2, frame.column - gap
        ok_top, all_top = frame.y(point.succeeded), frame.y(point.attempts)
        base = frame.y(0)
        if point.succeeded:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{ok_top:.1f}" width="{width:.2f}" height="{base - ok_top:.1f}"/>'
            )
        if point.attempts > point.succeeded:
            parts.append(
                f'<rect class="bad" x="{x:.1f}" y="{all_top:.1f}" width="{width:.2f}" height="{ok_top - all_top:.1f}"/>'
            )
    parts += frame.tooltips(
        points, lambda p: f"{p.attempts} attempts, {p.succeeded} succeeded, {p.attempts - p.succeeded} failed"
    )
    return _svg("Attempts per hour", parts, [("succeeded", "ok"), ("failed", "bad")])


def _lines(frame: _Frame, series: Sequence[Series]) -> list[str]:
    """Each series as a polyline, broken where an hour has no value; lone points as dots."""
    parts = []
    for line in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(line.values):
            if value is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append((frame.x(index) + frame.column / 2, frame.y(value)))
        for run in runs:
            if len(run) == 1:
                parts.append(f'<circle class="dot {line.css}" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="2"/>')
            elif run:
                coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="line {line.css}" points="{coords}"/>')
    return parts


def success_chart(points: Sequence[HourPoint]) -> Markup:
    """Success rate per hour, in percent; hours without attempts are gaps."""
    frame = _Frame(len(points), 100.0)
    parts = frame.axes(points, lambda value: f"{value:g}%")
    parts += _lines(frame, [Series("success rate", "rate", [p.success_rate for p in points])])

    def describe(point: HourPoint) -> str:
        rate = point.success_rate
        return "no attempts" if rate is None else f"{rate:.1f}% of {point.attempts} attempts succeeded"

    parts += frame.tooltips(points, describe)
    return _svg("Success rate per hour", parts, [("success rate", "rate")])


def _ms(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def latency_chart(points: Sequence[HourPoint]) -> Markup:
    """Response time per hour: the average, and the p95 (as the bound of its latency bucket)."""
    highest = max((p.p95_ms or 0.0 for p in points), default=0.0)
    highest = max(highest, max((p.avg_ms or 0.0 for p in points), default=0.0))
    frame = _Frame(len(points), nice_ceiling(highest))
    parts = frame.axes(points, _ms)
    parts += _lines(
        frame,
        [
            Series("p95", "p95", [p.p95_ms for p in points]),
            Series("average", "avg", [p.avg_ms for p in points]),
        ],
    )

    def describe(point: HourPoint) -> str:
        if point.avg_ms is None or point.p95_ms is None:
            return "no attempts"
        return f"average {point.avg_ms:.0f} ms, p95 at most {point.p95_ms:.0f} ms ({point.attempts} attempts)"

    parts += frame.tooltips(points, describe)
    return _svg("Response time per hour", parts, [("average", "avg"), ("p95 (bucket bound)", "p95")])
