"""Just enough charting, drawn with Pillow, for the load test's figures: stacked panels sharing
an x axis, each with line and scatter series, linear or log axes, and a legend.

Pillow instead of matplotlib because Pillow is already a dependency of the service and the
figures need nothing more than axes, points and lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from loadtest.images import load_font

Color = tuple[int, int, int]

BLUE: Color = (31, 119, 180)
ORANGE: Color = (255, 127, 14)
GREEN: Color = (44, 160, 44)
RED: Color = (214, 39, 40)
PURPLE: Color = (148, 103, 189)
GREY: Color = (150, 150, 150)
LIGHT_BLUE: Color = (170, 200, 230)

_MARGIN_LEFT, _MARGIN_RIGHT, _PANEL_GAP, _TITLE_H, _XLABEL_H = 90, 30, 56, 68, 50


@dataclass
class Series:
    xs: Sequence[float]
    ys: Sequence[float]
    color: Color = BLUE
    label: str | None = None
    kind: str = "line"  # "line", "scatter" or "markers" (a line with a dot on every point)
    width: int = 2
    radius: int = 1


@dataclass
class Panel:
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_y: bool = False
    y_min: float | None = None
    y_max: float | None = None
    shade: Sequence[tuple[float, float, str]] = ()  # (x0, x1, label): a greyed x range


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round-numbered ticks (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade over narrow ranges, whole decades over wide ones."""
    lo_exp, hi_exp = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mantissas = (1, 2, 5) if hi_exp - lo_exp <= 3 else (1,)
    return [m * 10.0**e for e in range(lo_exp, hi_exp + 1) for m in mantissas if lo <= m * 10.0**e <= hi * 1.0001]


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000:
        return f"{value / 1000:g}k"
    if abs(value) >= 1:
        return f"{value:g}"
    return f"{value:.3g}"


def _axis_range(values: list[float], log: bool, lo: float | None, hi: float | None) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    data_lo = min(finite) if finite else (1.0 if log else 0.0)
    data_hi = max(finite) if finite else (10.0 if log else 1.0)
    if log:
        lo = lo if lo is not None else 10 ** math.floor(math.log10(data_lo))
        hi = hi if hi is not None else 10 ** math.ceil(math.log10(data_hi) + 1e-9)
        if hi <= lo:
            hi = lo * 10
    else:
        lo = lo if lo is not None else min(0.0, data_lo)
        hi = hi if hi is not None else (data_hi * 1.1 if data_hi > 0 else 1.0)
        if hi <= lo:
            hi = lo + 1.0
    return lo, hi


def render(
    path: Path | str,
    panels: list[Panel],
    *,
    title: str,
    xlabel: str,
    x_range: tuple[float, float] | None = None,
    log_x: bool = False,
    x_ticks: Sequence[float] | None = None,
    width: int = 1200,
    panel_height: int = 300,
) -> Path:
    """Draws `panels` stacked top to bottom and writes a PNG to `path`."""
    path = Path(path)
    height = _TITLE_H + len(panels) * (panel_height + _PANEL_GAP) + _XLABEL_H - _PANEL_GAP
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small, bold = load_font(14), load_font(12), load_font(16, bold=True)
    draw.text((_MARGIN_LEFT, 14), title, font=bold, fill=(0, 0, 0))

    all_x = [x for p in panels for s in p.series for x in s.xs]
    if x_range:
        x_lo, x_hi = x_range
    elif log_x:
        x_lo, x_hi = _axis_range(all_x, True, None, None)
    else:
        x_lo, x_hi = (min(all_x), max(all_x)) if all_x else (0.0, 1.0)
        x_hi = x_hi if x_hi > x_lo else x_lo + 1.0
    plot_left, plot_right = _MARGIN_LEFT, width - _MARGIN_RIGHT

    def fx(x: float) -> float:
        if log_x:
            x = max(x, x_lo)
            frac = (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))
            return plot_left + frac * (plot_right - plot_left)
        return plot_left + (x - x_lo) / (x_hi - x_lo) * (plot_right - plot_left)

    ticks_x = list(x_ticks) if x_ticks is not None else (log_ticks(x_lo, x_hi) if log_x else nice_ticks(x_lo, x_hi))
    for index, panel in enumerate(panels):
        top = _TITLE_H + index * (panel_height + _PANEL_GAP)
        bottom = top + panel_height
        all_y = [y for s in panel.series for y in s.ys]
        y_lo, y_hi = _axis_range(all_y, panel.log_y, panel.y_min, panel.y_max)

        def fy(
            y: float,
            y_lo: float = y_lo,
            y_hi: float = y_hi,
            top: int = top,
            bottom: int = bottom,
            log: bool = panel.log_y,
        ) -> float:
            if log:
                y = min(max(y, y_lo), y_hi)
                frac = (math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo))
            else:
                frac = (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)
            return bottom - frac * (bottom - top)

        for x0, x1, label in panel.shade:
            left, right = fx(max(x0, x_lo)), fx(min(x1, x_hi))
            if right > left:
                draw.rectangle((left, top, right, bottom), fill=(238, 238, 238))
                draw.text((left + 4, top + 4), label, font=small, fill=GREY)
        ticks_y = log_ticks(y_lo, y_hi) if panel.log_y else nice_ticks(y_lo, y_hi)
        for tick in ticks_y:
            y = fy(tick)
            draw.line((plot_left, y, plot_right, y), fill=(225, 225, 225))
            label = format_number(tick)
            draw.text((plot_left - 8 - draw.textlength(label, font=small), y - 7), label, font=small, fill=(60, 60, 60))
        for tick in ticks_x:
            if x_lo <= tick <= x_hi:
                x = fx(tick)
                draw.line((x, top, x, bottom), fill=(235, 235, 235))
                if index == len(panels) - 1:
                    label = format_number(tick)
                    draw.text(
                        (x - draw.textlength(label, font=small) / 2, bottom + 6), label, font=small, fill=(60, 60, 60)
                    )
        draw.rectangle((plot_left, top, plot_right, bottom), outline=(90, 90, 90))
        # The y label sits above the axis rather than rotated beside it: Pillow cannot rotate text
        # in place, and a horizontal label reads better anyway.
        draw.text((plot_left, top - 20), panel.ylabel, font=font, fill=(30, 30, 30))

        for series in panel.series:
            # A missing value (NaN: no data in that bin) breaks the line rather than bridging
            # the gap with a slope that was never measured.
            runs: list[list[tuple[float, float]]] = [[]]
            for x, y in zip(series.xs, series.ys, strict=True):
                if math.isfinite(y) and (y > 0 or not panel.log_y):
                    runs[-1].append((fx(x), fy(y)))
                elif runs[-1]:
                    runs.append([])
            for points in runs:
                if series.kind in ("line", "markers") and len(points) > 1:
                    draw.line(points, fill=series.color, width=series.width, joint="curve")
                if series.kind in ("scatter", "markers") or len(points) == 1:
                    r = series.radius if series.kind == "scatter" else series.width
                    for x, y in points:
                        draw.ellipse((x - r, y - r, x + r, y + r), fill=series.color)

        legend = [s for s in panel.series if s.label]
        lx = plot_right - 10
        for series in reversed(legend):
            text_w = draw.textlength(series.label or "", font=small)
            lx -= text_w + 30
            draw.rectangle((lx, top + 10, lx + 14, top + 22), fill=series.color)
            draw.text((lx + 18, top + 8), series.label or "", font=small, fill=(30, 30, 30))

    label_w = draw.textlength(xlabel, font=font)
    draw.text(((plot_left + plot_right - label_w) / 2, height - _XLABEL_H + 24), xlabel, font=font, fill=(30, 30, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")
    return path
