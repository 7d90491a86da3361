"""Line charts as inline SVG: self-contained plots for the HTML report (no scripts, no network)."""

from __future__ import annotations

import datetime as dt
import html
import math

Series = list[tuple[float, float]]  # (epoch seconds, value)
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def line_chart(
    title: str,
    series: dict[str, Series],
    reference: float | None = None,
    width: int = 560,
    height: int = 240,
) -> str:
    """One chart; `reference` draws a dashed horizontal line (a threshold)."""
    points = [(t, v) for s in series.values() for t, v in s if math.isfinite(v)]
    name = html.escape(title)
    if not points:
        return (
            f'<svg class="plot empty" role="img" aria-label="{name}" width="{width}" height="60">'
            f'<text x="10" y="35">{name}: no data in this range</text></svg>'
        )
    left, right, top, bottom = 56, 12, 24, 30
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    values = [v for _, v in points] + ([reference] if reference is not None else [])
    v0, v1 = min(values), max(values)
    if v1 == v0:
        v0, v1 = v0 - 0.5, v1 + 0.5
    t1 = t1 if t1 > t0 else t0 + 1

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (width - left - right)

    def y(v: float) -> float:
        return top + (v1 - v) / (v1 - v0) * (height - top - bottom)

    parts = [
        f'<svg class="plot" role="img" aria-label="{name}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="16" font-weight="bold">{name}</text>',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#ccc"/>',
    ]
    for tick in _ticks(v0, v1):
        parts.append(
            f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="10">'
            f"{tick:.3g}</text>"
        )
    for i, tick in enumerate(_ticks(t0, t1, 2)):
        label = dt.datetime.fromtimestamp(tick, dt.UTC).strftime("%m-%d %H:%M")
        anchor = ("start", "middle", "end")[i]  # keep the first and last labels inside the chart
        parts.append(
            f'<text x="{x(tick):.1f}" y="{height - 10}" text-anchor="{anchor}" '
            f'font-size="10">{label}</text>'
        )
    if reference is not None:
        parts.append(
            f'<line class="reference" x1="{left}" x2="{width - right}" y1="{y(reference):.1f}" '
            f'y2="{y(reference):.1f}" stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    for i, (label, data) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in data if math.isfinite(v))
        parts.append(
            f'<polyline class="series" data-label="{html.escape(label)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
        )
        parts.append(
            f'<text x="{width - right - 4}" y="{top + 12 + 12 * i}" text-anchor="end" '
            f'font-size="10" fill="{colour}">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
