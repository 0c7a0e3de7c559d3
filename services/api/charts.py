"""Small server-rendered charts for the /ops page: an inline SVG sparkline per series, no script needed."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH_PX = 240
HEIGHT_PX = 48


def sparkline(values: Sequence[float | None], *, label: str, unit: str = "",
              width: int = WIDTH_PX, height: int = HEIGHT_PX) -> Markup:
    """An SVG polyline of `values` (None leaves a gap), scaled to the largest value, with a title for readers
    and screen readers. An empty or all-zero series draws a flat line at the bottom."""
    top = max((v for v in values if v is not None), default=0) or 1
    step = width / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        y = height - 2 - (height - 4) * value / top
        runs[-1].append(f"{i * step:.1f},{y:.1f}")
    # A lone point (a minute between gaps) is a dot: a polyline of one point draws nothing.
    lines = "".join(f'<polyline points="{" ".join(run)}"/>' if len(run) > 1 else
                    '<circle cx="{}" cy="{}" r="1.5"/>'.format(*run[0].split(",")) for run in runs if run)
    peak = max((v for v in values if v is not None), default=None)
    title = f"{label}: peak {peak:g}{unit}" if peak is not None else f"{label}: no data"
    return Markup(
        f'<svg class="spark" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' aria-label="{escape(title)}"><title>{escape(title)}</title>{lines}</svg>')
