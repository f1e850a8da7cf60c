"""Server-side SVG charts (sans-IO): supply levels over time, monthly page volumes.

No script, no library: each chart is an <svg role="img"> with a <title> and a text legend, so
nothing depends on colour alone; points without a percentage (someRemaining, unknown) are
drawn as hollow marks on the baseline and named in the legend, never as a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

PALETTE = ("#1f5fa8", "#b3261e", "#2e7d32", "#7b1fa2", "#ef6c00", "#00838f", "#5d4037")
W, H, PAD_L, PAD_B, PAD_T = 640, 200, 44, 28, 10


def swatch(colour: str) -> str:
    """A legend's colour sample (an SVG, not a style attribute: the CSP allows no inline style)."""
    return (
        f'<svg class="swatch" width="12" height="12" aria-hidden="true">'
        f'<rect width="12" height="12" fill="{colour}"/></svg>'
    )


def _fmt(n: float) -> str:
    return f"{n:.1f}".rstrip("0").rstrip(".")


def _frame(title: str, body: list[str], legend: list[str]) -> Markup:
    items = "".join(f"<li>{x}</li>" for x in legend)
    svg = (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )
    return Markup(f'<figure class="chart">{svg}<ul class="legend">{items}</ul></figure>')


def _axes(y_max: float, unit: str) -> list[str]:
    out = []
    for i in range(5):
        v = y_max * i / 4
        y = H - PAD_B - (H - PAD_B - PAD_T) * i / 4
        out.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(v)}{unit}</text>"
        )
    return out


def supply_levels(title: str, series: Sequence[tuple[str, str | None, Sequence[tuple]]]) -> Markup:
    """series: (name, fill colour or None, [(polledAt, percent or None, meaning)]) per supply,
    oldest first; without a colour a supply gets one of the palette."""
    times = [p[0] for _, _, pts in series for p in pts]
    if not times:
        return Markup('<p class="muted">No supply readings in this period.</p>')
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    body = _axes(100, "%")
    legend = []

    def x(t: datetime) -> float:
        return PAD_L + (W - PAD_L - 8) * (t - t0).total_seconds() / span

    def y(p: float) -> float:
        return H - PAD_B - (H - PAD_B - PAD_T) * p / 100

    for i, (name, fill, pts) in enumerate(series):
        colour = fill or PALETTE[i % len(PALETTE)]
        known = [(x(t), y(p)) for t, p, _ in pts if p is not None]
        unknown = [(x(t), m) for t, p, m in pts if p is None]
        if len(known) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in known)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                        'stroke-width="2"/>')  # fmt: skip
        elif known:
            body.append(f'<circle cx="{known[0][0]:.1f}" cy="{known[0][1]:.1f}" r="3" '
                        f'fill="{colour}"/>')  # fmt: skip
        for a, _ in unknown[-50:]:
            body.append(f'<circle cx="{a:.1f}" cy="{H - PAD_B}" r="3" fill="none" '
                        f'stroke="{colour}"/>')  # fmt: skip
        last = pts[-1]
        now = f"{_fmt(last[1])} %" if last[1] is not None else _meaning(last[2])
        legend.append(
            f"{swatch(colour)}{escape(name)}: {now}"
            + (f" ({len(unknown)} reads without a percentage)" if unknown else "")
        )
    body.append(
        f'<text x="{PAD_L}" y="{H - 8}" class="tick">{t0:%Y-%m-%d}</text>'
        f'<text x="{W - 8}" y="{H - 8}" text-anchor="end" class="tick">{t1:%Y-%m-%d %H:%M}</text>'
    )
    return _frame(title, body, legend)


def _nice(n: int) -> int:
    """The next round number at or above n (1, 2, 5 × 10^k, at least 4), for whole ticks."""
    step = 1
    while True:
        for f in (4, 8, 20):
            if f * step >= n:
                return f * step
        step *= 10


def _meaning(meaning: str) -> str:
    return {
        "someRemaining": "some remaining",
        "unknown": "level unknown",
        "other": "level other",
        "invalid": "invalid level",
    }.get(meaning, meaning)


def monthly_bars(
    title: str,
    months: Sequence[datetime],
    series: Sequence[tuple[str, Sequence[int]]],
    marks: Sequence[tuple[int, str]] = (),
) -> Markup:
    """Grouped bars: per month, one bar per series; marks: (month index, text) of resets."""
    if not series:
        return Markup('<p class="muted">No page counters in this period.</p>')
    top = _nice(max([1, *(v for _, vals in series for v in vals)]))
    body = _axes(top, "")
    slot = (W - PAD_L - 8) / len(months)
    bar = max(slot * 0.8 / len(series), 1.0)
    for i, (_, vals) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        for j, v in enumerate(vals):
            h = (H - PAD_B - PAD_T) * v / top
            bx = PAD_L + slot * j + slot * 0.1 + bar * i
            body.append(
                f'<rect x="{bx:.1f}" y="{H - PAD_B - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{months[j]:%Y-%m}: {v}</title></rect>'
            )
    for j, month in enumerate(months):
        if j % max(1, len(months) // 6) == 0:
            body.append(f'<text x="{PAD_L + slot * j + 2:.1f}" y="{H - 8}" class="tick">'
                        f"{month:%Y-%m}</text>")  # fmt: skip
    for j, text in marks:
        mx = PAD_L + slot * j + slot / 2
        body.append(
            f'<line x1="{mx:.1f}" y1="{PAD_T}" x2="{mx:.1f}" y2="{H - PAD_B}" class="mark"/>'
            f'<text x="{mx + 3:.1f}" y="{PAD_T + 10}" class="mark">{escape(text)}</text>'
        )
    legend = [
        f"{swatch(PALETTE[i % len(PALETTE)])}{escape(name)}: {sum(vals)} in {len(months)} months"
        for i, (name, vals) in enumerate(series)
    ]
    legend += [f"▲ {escape(text)} in {months[j]:%Y-%m}" for j, text in marks]
    return _frame(title, body, legend)
