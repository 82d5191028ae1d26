"""Charts drawn on the server as inline SVG: no script and no third-party asset (pure).

A chart is a ``<svg role="img">`` named by its ``<title>`` and described by its ``<desc>``; the
page puts a ``<table>`` of the same numbers beside it, which is what assistive technology and a
reader who wants the figures use. Colours come from the console's stylesheet (classes only: the
Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 36
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BAR_SHARE = 0.7  # of each period's slot; the rest is the gap between bars
MAX_BAR_W = 48.0  # a single period is a bar, not a wall


@dataclass(frozen=True)
class Point:
    """One period: its label as the page writes it, and its value (None: nothing measured)."""

    label: str
    value: float | None


@dataclass(frozen=True)
class Scale:
    """The value axis: 0 to ``top``, with a gridline at each tick."""

    top: float
    ticks: tuple[float, ...]


def nice_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw * (1 - 1e-9):
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def scale_for(values: Sequence[float | None], *, whole: bool = False, ticks: int = 4) -> Scale:
    """An axis from 0 that holds every value, in round steps (whole steps for counts)."""
    highest = max((v for v in values if v is not None), default=0.0)
    if highest <= 0:
        return Scale(1.0, (0.0, 1.0))
    step = nice_step(highest / ticks)
    if whole:
        step = max(step, 1.0)
    top = step * math.ceil(highest / step - 1e-9)
    count = round(top / step)
    return Scale(top, tuple(step * i for i in range(count + 1)))


def plain(value: float) -> str:
    """A number without an exponent: whole numbers without a decimal point, others as they are."""
    if value == int(value):
        return str(int(value))
    return f"{value:f}".rstrip("0").rstrip(".")


def _y(value: float, scale: Scale) -> float:
    return TOP + PLOT_H * (1 - value / scale.top)


def _n(x: float) -> str:
    """A coordinate, short."""
    return f"{x:.1f}".removesuffix(".0")


def svg(
    chart_id: str,
    title: str,
    description: str,
    points: Sequence[Point],
    *,
    kind: Literal["bars", "line"] = "bars",
    whole: bool = False,
    number: Callable[[float], str] = plain,
) -> Markup:
    """The chart's SVG: gridlines with their values, a bar or a point per period, the first and
    last periods' labels under the axis, and each mark's own ``<title>`` (label: value)."""
    scale = scale_for([p.value for p in points], whole=whole)
    ident = escape(chart_id)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{ident}-title" aria-describedby="{ident}-desc">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
        '<g class="grid">',
    ]
    for tick in scale.ticks:
        at = _n(_y(tick, scale))
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at}" y2="{at}"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{at}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(number(tick))}</text>"
        )
    parts.append("</g>")
    n = len(points)
    slot = PLOT_W / n if n else PLOT_W
    centres = [LEFT + slot * (i + 0.5) for i in range(n)]
    marks: list[str] = []
    if kind == "bars":
        width = min(slot * BAR_SHARE, MAX_BAR_W)
        for centre, point in zip(centres, points, strict=True):
            if point.value is None:
                continue
            y = _y(point.value, scale)
            marks.append(
                f'<rect class="bar" x="{_n(centre - width / 2)}" y="{_n(y)}" width="{_n(width)}" '
                f'height="{_n(TOP + PLOT_H - y)}" data-value="{plain(point.value)}">'
                f"<title>{escape(point.label)}: {escape(number(point.value))}</title></rect>"
            )
    else:
        measured = [(c, p) for c, p in zip(centres, points, strict=True) if p.value is not None]
        if len(measured) > 1:
            line = " ".join(f"{_n(c)},{_n(_y(p.value or 0.0, scale))}" for c, p in measured)
            marks.append(f'<polyline class="line" points="{line}"/>')
        for centre, point in measured:
            value = point.value or 0.0
            marks.append(
                f'<circle class="point" cx="{_n(centre)}" cy="{_n(_y(value, scale))}" r="3.5" '
                f'data-value="{plain(value)}">'
                f"<title>{escape(point.label)}: {escape(number(value))}</title></circle>"
            )
    parts.append(f'<g class="marks">{"".join(marks)}</g>')
    axis_y = TOP + PLOT_H
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}"/>')
    if n:
        label_y = _n(axis_y + 20)
        anchor = "middle" if n == 1 else "start"
        parts.append(
            f'<text class="period" x="{_n(centres[0])}" y="{label_y}" text-anchor="{anchor}">'
            f"{escape(points[0].label)}</text>"
        )
        if n > 1:
            parts.append(
                f'<text class="period" x="{_n(centres[-1])}" y="{label_y}" text-anchor="end">'
                f"{escape(points[-1].label)}</text>"
            )
    parts.append("</svg>")
    # every text and attribute value above went through escape(); the rest is the chart's own markup
    return Markup("".join(parts))  # noqa: S704
