"""Charts drawn on the server as SVG text (no JavaScript): a human/machine time series and
horizontal bars. Every text in them is escaped; each is an image with a title and a description
for screen readers, and is sized by its viewBox so it scales to its container."""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

HUMAN_COLOUR = "#1f5fbf"
MACHINE_COLOUR = "#8a8f98"
AXIS_COLOUR = "#c8ccd2"
TEXT_COLOUR = "#333a44"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11"'
MARKERS_UP_TO = 48  # points drawn as dots too when there are this few (one alone is no line)
BAR_LABEL_CHARS = 34
BAR_ROW_PX = 22
MAX_BARS = 20
# XML 1.0 forbids most control characters even escaped; bidi overrides would let a label
# display as something it is not. Neither belongs in a chart.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: object) -> str:
    """Any value as text that is safe in SVG element content and in quoted attributes."""
    cleaned = _SURROGATE.sub("\ufffd", _UNPRINTABLE.sub("", str(value)))
    return html.escape(cleaned, quote=True)


def _open(kind: str, title: str, desc: str, *, width: int, height: int) -> list[str]:
    """The <svg> start tag, title and description, labelled for assistive technology, and the
    title shown on top (cut short before the legend's place; <title> keeps it whole)."""
    key = hashlib.sha256(f"{kind}\0{title}\0{desc}".encode(errors="replace")).hexdigest()[:10]
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{kind}-{key}-t {kind}-{key}-d" preserveAspectRatio="xMidYMid meet" '
        f'{FONT} fill="{TEXT_COLOUR}">',
        f'<title id="{kind}-{key}-t">{_text(title)}</title>',
        f'<desc id="{kind}-{key}-d">{_text(desc)}</desc>',
        f'<text x="8" y="16" font-size="13" font-weight="600">'
        f"{_text(_cut(title, (width - 180) // 7))}</text>",
    ]


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 1)] + "…"


def _no_data(kind: str, title: str, *, width: int, height: int) -> str:
    parts = _open(kind, title, "No data yet.", width=width, height=height)
    parts += [
        f'<rect x="8" y="26" width="{width - 16}" height="{height - 34}" fill="none" '
        f'stroke="{AXIS_COLOUR}" stroke-dasharray="4 3"/>',
        f'<text x="{width / 2:.1f}" y="{(height + 18) / 2:.1f}" text-anchor="middle" '
        f'fill="{MACHINE_COLOUR}">no data yet</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def _nice_top(peak: int) -> tuple[int, int]:
    """An axis top at or above `peak` and a tick step: 1, 2 or 5 times a power of ten."""
    if peak <= 4:
        return max(peak, 1), 1
    magnitude = 10 ** math.floor(math.log10(peak / 4))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude * 4 >= peak)
    return math.ceil(peak / step) * step, step


def _time_label(at: datetime, width: timedelta | None) -> str:
    if width is not None and width >= timedelta(days=1):
        return at.strftime("%d %b")
    return at.strftime("%d %b %H:%M")


def time_series_svg(
    points: Sequence[tuple[datetime, int, int]],
    *,
    title: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """Human (solid) and machine (dashed) counts per time bucket as two lines, UTC times."""
    if not points:
        return _no_data("series", title, width=width, height=height)
    left, right, top, bottom = 48, 12, 30, 26
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    humans = [max(int(human), 0) for _, human, _ in points]
    machines = [max(int(machine), 0) for _, _, machine in points]
    axis_top, step = _nice_top(max(*humans, *machines))
    bucket = points[1][0] - points[0][0] if len(points) > 1 else None

    def x(index: int) -> float:
        if len(points) == 1:
            return (x0 + x1) / 2
        return x0 + index * (x1 - x0) / (len(points) - 1)

    def y(value: int) -> float:
        return y1 - value * (y1 - y0) / axis_top

    peak = max(range(len(points)), key=humans.__getitem__)
    first, last = points[0][0], points[-1][0]
    desc = (
        f"{len(points)} time buckets from {_time_label(first, None)} to "
        f"{_time_label(last, None)} UTC. Human: {sum(humans)} in all, at most {humans[peak]} "
        f"(from {_time_label(points[peak][0], None)}). Machine: {sum(machines)} in all."
    )
    parts = _open("series", title, desc, width=width, height=height)
    parts.append(f'<g stroke="{AXIS_COLOUR}" stroke-width="1">')
    parts += [
        f'<line x1="{x0}" y1="{y(v):.1f}" x2="{x1}" y2="{y(v):.1f}"/>'
        for v in range(0, axis_top + 1, step)
    ]
    parts.append("</g>")
    parts += [
        f'<text x="{x0 - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>'
        for v in range(0, axis_top + 1, step)
    ]
    ticks = sorted({0, len(points) // 3, 2 * len(points) // 3, len(points) - 1})
    for index in ticks:
        anchor = "start" if index == 0 else "end" if index == len(points) - 1 else "middle"
        label = _time_label(points[index][0], bucket)
        parts.append(
            f'<line x1="{x(index):.1f}" y1="{y1}" x2="{x(index):.1f}" y2="{y1 + 4}" '
            f'stroke="{AXIS_COLOUR}"/>'
            f'<text x="{x(index):.1f}" y="{y1 + 16}" text-anchor="{anchor}">{_text(label)}</text>'
        )
    for values, colour, dash in (
        (machines, MACHINE_COLOUR, ' stroke-dasharray="5 3"'),
        (humans, HUMAN_COLOUR, ""),
    ):
        line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash} '
            'stroke-linejoin="round"/>'
        )
        if len(points) <= MARKERS_UP_TO:
            parts += [
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>'
                for i, v in enumerate(values)
            ]
    legend_x = width - right - 150
    parts += [
        f'<line x1="{legend_x}" y1="12" x2="{legend_x + 18}" y2="12" stroke="{HUMAN_COLOUR}" '
        'stroke-width="2"/>',
        f'<text x="{legend_x + 22}" y="16">human</text>',
        f'<line x1="{legend_x + 74}" y1="12" x2="{legend_x + 92}" y2="12" '
        f'stroke="{MACHINE_COLOUR}" stroke-width="2" stroke-dasharray="5 3"/>',
        f'<text x="{legend_x + 96}" y="16">machine</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def shorten(label: str, max_chars: int = BAR_LABEL_CHARS) -> str:
    """A label that fits: a URL loses its scheme and "www.", then its middle, so the site and
    the end of the path (which tell links apart) both stay."""
    text = re.sub(r"^https?://(www\.)?", "", label.strip(), flags=re.IGNORECASE) or label
    if len(text) <= max_chars:
        return text
    head = math.ceil((max_chars - 1) * 0.6)
    tail = max_chars - 1 - head
    return f"{text[:head]}…{text[len(text) - tail :]}"


def bar_chart_svg(
    rows: Sequence[tuple[str, int]], *, title: str, width: int = 640, max_rows: int = MAX_BARS
) -> str:
    """Horizontal bars, one per (label, value), in the order given; the first max_rows only."""
    if not rows:
        return _no_data("bars", title, width=width, height=90)
    shown = [(label, max(int(value), 0)) for label, value in rows[:max_rows]]
    hidden = len(rows) - len(shown)
    label_px, value_px, top = 230, 56, 30
    height = top + len(shown) * BAR_ROW_PX + (22 if hidden else 8)
    scale = (width - label_px - value_px) / max(max(value for _, value in shown), 1)
    listed = "; ".join(f"{label}: {value}" for label, value in shown)
    more = f"; and {hidden} more not shown" if hidden else ""
    parts = _open("bars", title, f"{len(rows)} bars. {listed}{more}.", width=width, height=height)
    for index, (label, value) in enumerate(shown):
        y = top + index * BAR_ROW_PX
        bar_px = value * scale
        parts.append(
            f"<g><title>{_text(label)}: {value}</title>"
            f'<text x="{label_px - 8}" y="{y + 15}" text-anchor="end">'
            f"{_text(shorten(label))}</text>"
            f'<rect x="{label_px}" y="{y + 4}" width="{bar_px:.1f}" height="{BAR_ROW_PX - 8}" '
            f'fill="{HUMAN_COLOUR}"/>'
            f'<text x="{label_px + bar_px + 6:.1f}" y="{y + 15}">{value}</text></g>'
        )
    if hidden:
        parts.append(
            f'<text x="{label_px}" y="{height - 8}" fill="{MACHINE_COLOUR}">'
            f"and {hidden} more not shown</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
