"""Server-side SVG charts for the dashboard pages: plain strings, no JavaScript, no build.

Each function takes plain numbers and labels and returns one <svg> element sized by its viewBox,
so it scales with the card it sits in.
"""
from __future__ import annotations

import math
from html import escape

INK = "#1d2330"
MUTED = "#6b7280"
GRID = "#e3e6eb"
BLUE = "#3b5bdb"
GREEN = "#2f9e44"
RED = "#c92a2a"
AMBER = "#e8590c"
FONT = 'font-family="system-ui, sans-serif"'


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:g}" if v == int(v) else f"{v:.2f}"


def _empty(width: int, height: int, message: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img"><text x="{width / 2}" y="{height / 2}" '
            f'text-anchor="middle" fill="{MUTED}" font-size="13" {FONT}>{escape(message)}</text></svg>')


def bars(labels: list[str], values: list[float], *, title: str, width: int = 1200, height: int = 240,
         color: str = BLUE, max_labels: int = 12, overlay: list[float] | None = None,
         overlay_color: str = AMBER) -> str:
    """Vertical bars over time (e.g. judgements per day); `overlay`: the part of each bar to show in
    `overlay_color` at its foot (e.g. rejected or below alpha)."""
    if not values:
        return _empty(width, height, "No data in this range yet.")
    left, right, top, bottom = 48, 12, 12, 36
    w, h = width - left - right, height - top - bottom
    top_v = 4 * _nice_max(max(values) / 4)
    n = len(values)
    step = w / n
    bar_w = max(1.0, step * 0.8)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(title)}">']
    for k in range(5):
        v = top_v * k / 4
        y = top + h - h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}" '
                     f'{FONT}>{_fmt(v)}</text>')
    every = max(1, math.ceil(n / max_labels))
    for i, (label, v) in enumerate(zip(labels, values)):
        x = left + i * step + (step - bar_w) / 2
        bh = h * v / top_v
        parts.append(f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{bar_w:.1f}" height="{bh:.1f}" '
                     f'fill="{color}" rx="1"><title>{escape(label)}: {_fmt(v)}</title></rect>')
        if overlay:
            oh = h * min(overlay[i], v) / top_v
            parts.append(f'<rect x="{x:.1f}" y="{top + h - oh:.1f}" width="{bar_w:.1f}" height="{oh:.1f}" '
                         f'fill="{overlay_color}"><title>{escape(label)}: {_fmt(overlay[i])}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 18}" text-anchor="middle" font-size="11" '
                         f'fill="{MUTED}" {FONT}>{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbars(labels: list[str], values: list[float], *, title: str, width: int = 560, colors: dict | None = None,
          value_format=_fmt) -> str:
    """Horizontal bars with the value at the end (queue depths, rates)."""
    if not values:
        return _empty(width, 60, "Nothing to show.")
    row, left, right = 24, 190, 60
    height = row * len(values) + 8
    top_v = max(values) or 1
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(title)}">']
    for i, (label, v) in enumerate(zip(labels, values)):
        y = 4 + i * row
        bw = (width - left - right) * v / top_v
        color = (colors or {}).get(label, BLUE)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12" fill="{INK}" {FONT}>'
                     f'{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(bw, 1 if v else 0):.1f}" height="{row - 8}" '
                     f'fill="{color}" rx="2"/>')
        parts.append(f'<text x="{left + bw + 6:.1f}" y="{y + 15}" font-size="12" fill="{INK}" {FONT}>'
                     f'{escape(value_format(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def forest(rows: list[dict], *, title: str, width: int = 1200) -> str:
    """Elo per checkpoint: a point and its 95% interval per row, the anchor's 1000 as a dashed line."""
    rows = [r for r in rows if r.get("elo") is not None]
    if not rows:
        return _empty(width, 80, "No comparisons between different checkpoints yet.")
    row, left, right, top = 30, 200, 90, 24
    height = top + row * len(rows) + 26
    lo = min(min(r["ci_low"] for r in rows), 1000)
    hi = max(max(r["ci_high"] for r in rows), 1000)
    pad = max(20.0, (hi - lo) * 0.08)
    lo, hi = math.floor((lo - pad) / 10) * 10, math.ceil((hi + pad) / 10) * 10
    w = width - left - right

    def x(v):
        return left + w * (v - lo) / (hi - lo)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(title)}">']
    span = hi - lo
    tick = _nice_max(span / 5)
    t = math.ceil(lo / tick) * tick
    while t <= hi:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 6}" y2="{height - 22}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle" font-size="11" fill="{MUTED}" '
                     f'{FONT}>{t:g}</text>')
        t += tick
    parts.append(f'<line x1="{x(1000):.1f}" x2="{x(1000):.1f}" y1="{top - 10}" y2="{height - 22}" stroke="{MUTED}" '
                 f'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x(1000) + 4:.1f}" y="{top - 12}" font-size="10" fill="{MUTED}" {FONT}>anchor 1000</text>')
    for i, r in enumerate(rows):
        y = top + i * row + row / 2
        color = MUTED if r.get("anchor") else BLUE
        parts.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="{INK}" {FONT}>'
                     f'{escape(r["checkpoint"])}</text>')
        parts.append(f'<line x1="{x(r["ci_low"]):.1f}" x2="{x(r["ci_high"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{color}" stroke-width="2"/>')
        for end in (r["ci_low"], r["ci_high"]):
            parts.append(f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" '
                         f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(r["elo"]):.1f}" cy="{y:.1f}" r="5" fill="{color}">'
                     f'<title>{escape(r["checkpoint"])}: {r["elo"]:.0f} [{r["ci_low"]:.0f}, {r["ci_high"]:.0f}]'
                     f'</title></circle>')
        parts.append(f'<text x="{width - right + 8}" y="{y + 4:.1f}" font-size="12" fill="{INK}" {FONT}>'
                     f'{r["elo"]:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)
