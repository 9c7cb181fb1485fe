"""Inline SVG charts for the HTML report, drawn from counts with no library.

Every function returns one ``<svg>`` element as text, with all labels
escaped, sized in CSS pixels and scaled to the width of its container.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart", "column_chart"]

FONT = "font-family:system-ui,sans-serif"
AXIS_COLOR = "#9aa3ad"
TEXT_COLOR = "#1f2933"
MUTED_COLOR = "#52606d"
DEFAULT_COLOR = "#3b6fb6"

# Labels longer than this are cut with an ellipsis; the full text is in
# the bar's tooltip.
_MAX_LABEL_CHARS = 30

# Estimated average width, in pixels, of a character at font size 13.
_CHAR_WIDTH = 7.5


def _short(label: str, limit: int = _MAX_LABEL_CHARS) -> str:
    if len(label) <= limit:
        return label
    return label[: limit - 1] + "\u2026"


def _empty(width: int, message: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} 40" width="{width}" height="40"'
        f' role="img"><text x="0" y="24" fill="{MUTED_COLOR}" style="{FONT}"'
        f' font-size="14">{escape(message)}</text></svg>'
    )


def bar_chart(
    items: Sequence[tuple[str, int]],
    *,
    colors: Sequence[str] = (),
    width: int = 560,
    label_width: int = 210,
    bar_height: int = 22,
    gap: int = 8,
    name: str = "",
) -> str:
    """Draw horizontal bars, one per (label, count), with the count after each.

    Args:
        items: labels and counts, drawn top to bottom in this order.
        colors: fill of each bar, by position; missing ones use the default.
        width: drawing width in pixels.
        label_width: pixels left of the bars for the labels.
        bar_height: height of each bar in pixels.
        gap: pixels between bars.
        name: the chart's accessible name and ``data-chart`` value.
    """
    if not items or all(count == 0 for _, count in items):
        return _empty(width, "nothing to show")
    largest = max(count for _, count in items)
    fitting = int((label_width - 12) / _CHAR_WIDTH)
    value_width = 60
    span = width - label_width - value_width
    height = len(items) * (bar_height + gap) + gap
    parts = [
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width}'
        f' {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{escape(name)}">'
    ]
    for index, (label, count) in enumerate(items):
        top = gap + index * (bar_height + gap)
        middle = top + bar_height / 2
        color = colors[index] if index < len(colors) else DEFAULT_COLOR
        length = 0.0 if largest == 0 else span * count / largest
        # A zero count still shows a sliver, so the row reads as a bar.
        length = max(length, 2.0)
        parts.append(
            f'<g data-label="{escape(label)}" data-value="{count}">'
            f"<title>{escape(label)}: {count}</title>"
            f'<text x="{label_width - 8}" y="{middle:.1f}" text-anchor="end"'
            f' dominant-baseline="central" fill="{TEXT_COLOR}" style="{FONT}"'
            f' font-size="13">{escape(_short(label, fitting))}</text>'
            f'<rect x="{label_width}" y="{top}" width="{length:.1f}"'
            f' height="{bar_height}" rx="3" fill="{color}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{middle:.1f}"'
            f' dominant-baseline="central" fill="{TEXT_COLOR}" style="{FONT}"'
            f' font-size="13" font-weight="600">{count}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(
    items: Sequence[tuple[str, int]],
    *,
    colors: Sequence[str] = (),
    width: int = 1120,
    height: int = 240,
    name: str = "",
) -> str:
    """Draw vertical columns, one per (label, count), labels below the axis.

    Args:
        items: labels and counts, drawn left to right in this order.
        colors: fill of each column, by position; missing ones use the
            default.
        width: drawing width in pixels.
        height: drawing height in pixels, labels included.
        name: the chart's accessible name and ``data-chart`` value.
    """
    if not items:
        return _empty(width, "nothing to show")
    largest = max(count for _, count in items)
    label_band = 28
    value_band = 22
    baseline = height - label_band
    span = baseline - value_band
    slot = width / len(items)
    column = slot * 0.7
    parts = [
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width}'
        f' {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{escape(name)}">',
        f'<line x1="0" y1="{baseline}" x2="{width}" y2="{baseline}"'
        f' stroke="{AXIS_COLOR}" stroke-width="1"/>',
    ]
    for index, (label, count) in enumerate(items):
        left = index * slot + (slot - column) / 2
        center = index * slot + slot / 2
        length = 0.0 if largest == 0 else span * count / largest
        top = baseline - length
        color = colors[index] if index < len(colors) else DEFAULT_COLOR
        value = (
            f'<text x="{center:.1f}" y="{top - 6:.1f}" text-anchor="middle"'
            f' fill="{TEXT_COLOR}" style="{FONT}" font-size="13"'
            f' font-weight="600">{count}</text>'
            if count
            else ""
        )
        parts.append(
            f'<g data-label="{escape(label)}" data-value="{count}">'
            f"<title>{escape(label)}: {count}</title>"
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{column:.1f}"'
            f' height="{length:.1f}" rx="3" fill="{color}"/>{value}'
            f'<text x="{center:.1f}" y="{baseline + 18}" text-anchor="middle"'
            f' fill="{MUTED_COLOR}" style="{FONT}" font-size="12">'
            f"{escape(_short(label))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
