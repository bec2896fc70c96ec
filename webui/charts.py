"""The dashboard's chart as plain geometry for an inline SVG: bars of jobs
submitted per hour and a line of the failure rate. Drawn on the server, so the
page needs no chart library, no CDN and no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobsys.service.dashboard import Hour

WIDTH = 720
HEIGHT = 200
#: Room for the axis labels: left (counts), right (rate), bottom (hours).
LEFT, RIGHT, TOP, BOTTOM = 40, 44, 12, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class HourlyChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    bars: tuple[Bar, ...]
    #: "x,y x,y ..." for the failure-rate polyline; hours where nothing ended are gaps.
    rate_lines: tuple[str, ...]
    #: A dot per hour where jobs ended, so a lone hour still shows.
    rate_points: tuple[tuple[float, float], ...]
    max_count: int
    ticks: tuple[Tick, ...]


def hourly_chart(hours: Sequence[Hour]) -> HourlyChart:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(hours))
    top = _nice_ceiling(max((h.submitted for h in hours), default=0))
    bars, ticks, lines, line = [], [], [], []
    points: list[tuple[float, float]] = []
    for i, hour in enumerate(hours):
        x = LEFT + i * slot
        height = plot_h * hour.submitted / top
        rate = hour.failure_rate
        rate_text = "no job ended" if rate is None else f"{rate:.0%} of {hour.ended} ended failed"
        bars.append(
            Bar(
                x=round(x + slot * 0.1, 1),
                y=round(TOP + plot_h - height, 1),
                width=round(slot * 0.8, 1),
                height=round(height, 1),
                title=f"{hour.start:%H}:00 UTC: {hour.submitted} submitted, {rate_text}",
            )
        )
        if rate is None:
            if line:
                lines.append(" ".join(line))
            line = []
        else:
            point = (round(x + slot / 2, 1), round(TOP + plot_h * (1 - rate), 1))
            points.append(point)
            line.append(f"{point[0]},{point[1]}")
        if i % 6 == 0:
            ticks.append(Tick(round(x, 1), f"{hour.start:%H}:00"))
    if line:
        lines.append(" ".join(line))
    return HourlyChart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        plot_top=TOP,
        plot_bottom=TOP + plot_h,
        bars=tuple(bars),
        rate_lines=tuple(lines),
        rate_points=tuple(points),
        max_count=top,
        ticks=tuple(ticks),
    )


def _nice_ceiling(n: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``n`` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= n:
                return max(1, step * factor)
        step *= 10
