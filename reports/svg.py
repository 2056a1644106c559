"""Small charts written as SVG text, for the figures a report has a hundred of (each run's own page).

A matplotlib figure of a run's seven panels costs about a second to lay out and
rasterise; a study of the default's size has 150 runs. These charts are the same
panels as plain SVG (lines, points, dashed reference lines, a heat map), a few
milliseconds each, drawn from the same data with matplotlib's tick locators and
colours, so they read like the report's other figures. Rendering only: what is
drawn is decided by :mod:`diagnose.reports.panels` and :mod:`diagnose.reports.figures_run`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.colors import to_hex

__all__ = ["Line", "Chart", "Heatmap", "document", "COLORS", "ZERO_NOTE"]

# matplotlib's default cycle, so that a run page's lines have the colours of the report's figures.
COLORS = [to_hex(f"C{i}") for i in range(10)]
_FONT = 'font-family="DejaVu Sans, Verdana, sans-serif"'
# What a log axis' triangles at its bottom mean (a log axis has no 0).
ZERO_NOTE = "at the bottom: 0 (no place on a log axis)"
_PAD = (50, 10, 22, 32)  # left, right, top, bottom: room for tick labels, the title and the x label


@dataclass
class Line:
    """A series: x and y (NaN cells are gaps), drawn solid, dashed or as points joined."""

    label: str | None
    x: np.ndarray
    y: np.ndarray
    color: str
    width: float = 1.4
    dashed: bool = False
    points: bool = False
    band: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) at each x: the seeds' range, shaded
    zero: bool = False  # a legend entry for the zeros' marks on a log axis


@dataclass
class Chart:
    """One panel: lines over steps, optional horizontal reference lines, a legend of its labels."""

    title: str
    lines: list[Line] = field(default_factory=list)
    ylabel: str = ""
    xlabel: str = "step"
    log: bool = False
    ylim: tuple[float | None, float | None] = (None, None)
    note: str | None = None  # said in the middle when there is nothing to draw
    legend: bool = True  # False where the document carries one legend for every panel
    legend_rows: int = 0  # rows kept under the axes for the legend (document() sets one count for all panels)

    def svg(self, x0: float, y0: float, w: float, h: float) -> str:
        out = [_title(x0, y0, w, self.title, 11)]
        below = _LEGEND_ROW * self.legend_rows + (10 if self.legend_rows else 0)  # the legend, under the x label
        left, right, top, bottom = x0 + _PAD[0], x0 + w - _PAD[1], y0 + _PAD[2], y0 + h - _PAD[3] - below
        if self.note or not any(_finite(ln.y, self.log).any() for ln in self.lines):
            out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                       'stroke="#ccc"/>')
            out.append(_text((left + right) / 2, (top + bottom) / 2, self.note or "not recorded in this run",
                             size=10, anchor="middle", color="#888"))
            return "\n".join(out)
        xs = np.concatenate([ln.x[_finite(ln.y, self.log)] for ln in self.lines])
        ys = np.concatenate([ln.y[_finite(ln.y, self.log)] for ln in self.lines])
        xlo, xhi = _span(xs.min(), xs.max(), log=False)
        lo = self.ylim[0] if self.ylim[0] is not None else ys.min()
        hi = self.ylim[1] if self.ylim[1] is not None else ys.max()
        ylo, yhi = _span(lo, hi, self.log)
        if self.log and self._zeros():  # a strip at the bottom, below every positive value, where zeros are marked
            ylo = ylo / (yhi / ylo) ** 0.08
        fx = _scale(xlo, xhi, left, right, False)
        fy = _scale(ylo, yhi, bottom, top, self.log)
        out += _axes(left, right, top, bottom, xlo, xhi, ylo, yhi, fx, fy, self.log)
        out.append(f'<clipPath id="c{id(self)}"><rect x="{left}" y="{top}" width="{right - left}" '
                   f'height="{bottom - top}"/></clipPath><g clip-path="url(#c{id(self)})">')
        for ln in self.lines:
            out += _band(ln, fx, fy, self.log) + _line(ln, fx, fy, self.log)
        out.append("</g>")
        if self.log:
            out += _zeros(self.lines, fx, bottom)
        if self.ylabel:
            out.append(_text(x0 + 11, (top + bottom) / 2, self.ylabel, size=9, anchor="middle", rotate=True))
        out.append(_text((left + right) / 2, bottom + 28, self.xlabel, size=9, anchor="middle"))
        if self.legend and self.legend_rows:
            out += _legend(self._legend_lines(), x0 + 8, bottom + 36, w - 12, self.legend_rows)
        return "\n".join(out)

    def _zeros(self) -> bool:
        return self.log and any((np.asarray(ln.y, dtype=float) == 0).any() for ln in self.lines)

    def _legend_lines(self) -> list[Line]:
        lines = [ln for ln in self.lines if ln.label]
        if self._zeros():
            lines.append(Line(ZERO_NOTE, np.zeros(0), np.zeros(0), "#555", zero=True))
        return lines

    def legend_size(self, w: float) -> int:
        """The rows its legend takes under the axes at width ``w`` (0 without one)."""
        labels = [ln.label for ln in self._legend_lines()] if self.legend else []
        return -(-min(len(labels), _LEGEND_MOST + 1) // _legend_columns(labels, w)) if labels else 0


@dataclass
class Heatmap:
    """A matrix as coloured cells (rows top to bottom), on a colour scale from 0 to ``vmax``."""

    title: str
    values: np.ndarray | None  # (rows, columns); None: nothing recorded
    row_labels: list[str] = field(default_factory=list)
    xlabel: str = ""
    vmax: float = 1.0
    ends: tuple[str, str] = ("", "")  # what the first and the last column are

    def svg(self, x0: float, y0: float, w: float, h: float) -> str:
        out = [_title(x0, y0, w, self.title, 10)]
        left, right, top, bottom = x0 + _PAD[0], x0 + w - _PAD[1], y0 + _PAD[2], y0 + h - _PAD[3]
        if self.values is None or not self.values.size:
            out.append(_text((left + right) / 2, (top + bottom) / 2, "not recorded in this run", size=10,
                             anchor="middle", color="#888"))
            return "\n".join(out)
        rows, cols = self.values.shape
        cw, ch = (right - left) / cols, (bottom - top) / rows
        cmap = colormaps["viridis"]
        for i in range(rows):
            for j in range(cols):
                share = float(self.values[i, j]) / self.vmax if self.vmax > 0 else 0.0
                out.append(f'<rect x="{left + j * cw:.1f}" y="{top + i * ch:.1f}" width="{cw + 0.4:.1f}" '
                           f'height="{ch + 0.4:.1f}" fill="{to_hex(cmap(min(max(share, 0.0), 1.0)))}"/>')
            if i < len(self.row_labels):
                out.append(_text(left - 4, top + (i + 0.5) * ch + 3, self.row_labels[i], size=9, anchor="end"))
        out.append(_text(left, bottom + 11, self.ends[0], size=9, anchor="start"))
        out.append(_text(right, bottom + 11, self.ends[1], size=9, anchor="end"))
        out.append(_text((left + right) / 2, y0 + h - 4, self.xlabel, size=9, anchor="middle"))
        return "\n".join(out)


def document(panels: list[tuple[object, int]], columns: int, width: float, row_height: float, title: str,
             legend: list[Line] | None = None) -> str:
    """A whole SVG file: panels laid out left to right, ``(panel, columns it spans)``, wrapping at ``columns``;
    ``legend``, where given, is one line of labels across the top for every panel."""
    cell = width / columns
    head = 18 if legend else 0
    charts = [(p, span) for p, span in panels if isinstance(p, Chart)]
    rows = max((p.legend_size(cell * span) for p, span in charts), default=0)
    for p, _ in charts:  # one height for every panel's legend: the axes line up
        p.legend_rows = rows
    row_height += _LEGEND_ROW * rows + 10 if rows else 0  # the legends below, the axes their full height
    body, col, row = [], 0, 0
    if legend:
        x = 8.0
        for ln in legend:
            dash = ' stroke-dasharray="5,3"' if ln.dashed else ""
            body.append(f'<line x1="{x:.1f}" y1="9" x2="{x + 16:.1f}" y2="9" stroke="{ln.color}" stroke-width="1.8"'
                        f'{dash}/>')
            body.append(_text(x + 20, 13, ln.label or "", size=10))
            x += 34 + 6.2 * len(ln.label or "")
    for panel, span in panels:
        if col + span > columns:
            col, row = 0, row + 1
        body.append(panel.svg(col * cell, head + row * row_height, cell * span, row_height))
        col += span
    height = head + (row + 1) * row_height
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" {_FONT}>\n<title>{html.escape(title)}</title>\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def _finite(y: np.ndarray, log: bool) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.isfinite(y) & (y > 0) if log else np.isfinite(y)


def _span(lo: float, hi: float, log: bool) -> tuple[float, float]:
    """The axis limits around [lo, hi] with a little margin; a flat series gets a span of its own."""
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    pad = 0.04 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return (10 ** lo, 10 ** hi) if log else (lo, hi)


def _scale(lo: float, hi: float, a: float, b: float, log: bool):
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
        return lambda v: a + (math.log10(v) - lo) / (hi - lo) * (b - a)
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _axes(left, right, top, bottom, xlo, xhi, ylo, yhi, fx, fy, log) -> list[str]:
    out = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#444" '
           'stroke-width="0.8"/>']
    for v in ticker.MaxNLocator(nbins=6, integer=True).tick_values(xlo, xhi):
        if xlo <= v <= xhi:
            x = fx(v)
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e6e6e6"/>')
            out.append(_text(x, bottom + 11, f"{v:g}", size=9, anchor="middle"))
    locator = ticker.LogLocator(numticks=6) if log else ticker.MaxNLocator(nbins=5)
    for v in locator.tick_values(ylo, yhi):
        if ylo <= v <= yhi:
            y = fy(v)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e6e6e6"/>')
            out.append(_text(left - 4, y + 3, _tick(v, log), size=9, anchor="end"))
    return out


def _tick(v: float, log: bool) -> str:
    if log:
        return f"{v:g}" if 1e-3 <= v <= 1e4 else f"1e{round(math.log10(v))}"
    return f"{v:.4g}"


def _line(ln: Line, fx, fy, log: bool) -> list[str]:
    """The series as polylines broken at its gaps, with its points where it has few."""
    ok = _finite(ln.y, log)
    dash = ' stroke-dasharray="5,3"' if ln.dashed else ""
    runs, run = [], []
    for x, y, good in zip(ln.x, ln.y, ok):
        if good:
            run.append(f"{fx(x):.1f},{fy(y):.1f}")
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    out = [f'<polyline points="{" ".join(r)}" fill="none" stroke="{ln.color}" stroke-width="{ln.width}"{dash}/>'
           for r in runs]
    if ln.points:
        out += [f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2" fill="{ln.color}"/>'
                for x, y, good in zip(ln.x, ln.y, ok) if good]
    return out


def _band(ln: Line, fx, fy, log: bool) -> list[str]:
    """The seeds' range around a line, as one shaded polygon over the x where both ends are finite."""
    if ln.band is None:
        return []
    low, high = (np.asarray(b, dtype=float) for b in ln.band)
    ok = _finite(low, log) & _finite(high, log)
    if ok.sum() < 2:
        return []
    xs = np.asarray(ln.x, dtype=float)[ok]
    upper = [f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(xs, high[ok])]
    lower = [f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(xs[::-1], low[ok][::-1])]
    return [f'<polygon points="{" ".join(upper + lower)}" fill="{ln.color}" fill-opacity="0.18" stroke="none"/>']


# A legend under a panel's axes: rows of this height, at most this many entries (then how many more).
_LEGEND_ROW, _LEGEND_MOST = 11, 10
_CHAR = 4.9  # px per character of the legend's 8 px text


def _legend_columns(labels: list[str], w: float) -> int:
    """As many columns as the longest label lets fit in ``w`` (1 to 3)."""
    widest = 22 + _CHAR * max(len(t) for t in labels)
    return max(1, min(3, int((w - 12) // widest)))


def _legend(lines: list[Line], left: float, top: float, w: float, rows: int) -> list[str]:
    """Labels under the panel's axes, in columns (the first entries, then how many more): never on the data."""
    if not lines:
        return []
    most = _LEGEND_MOST if len(lines) > _LEGEND_MOST else len(lines)
    shown = lines[:most]
    labels = [ln.label for ln in shown] + ([f"and {len(lines) - most} more"] if len(lines) > most else [])
    step = (w - 12) / _legend_columns(labels, w)
    out = []
    for k, label in enumerate(labels):  # down each column, then the next: rows fixed by document()
        x, y = left + (k // rows) * step, top + _LEGEND_ROW * (k % rows)
        if k < len(shown) and shown[k].zero:
            out.append(_triangle(x + 6, y + 2, shown[k].color))
        elif k < len(shown):
            ln = shown[k]
            dash = ' stroke-dasharray="4,2"' if ln.dashed else ""
            out.append(f'<line x1="{x:.1f}" y1="{y + 5:.1f}" x2="{x + 12:.1f}" y2="{y + 5:.1f}" stroke="{ln.color}" '
                       f'stroke-width="1.6"{dash}/>')
        grey = "" if k < len(shown) else ' fill="#666"'
        out.append(f'<text x="{x + 16:.1f}" y="{y + 8:.1f}" font-size="8"{grey}>{html.escape(label)}</text>')
    return out


def _zeros(lines: list[Line], fx, bottom: float) -> list[str]:
    """Zeros on a log axis (which has no 0): a triangle in the strip at the axis' bottom for each."""
    return [_triangle(fx(x), bottom - 7, ln.color) for ln in lines
            for x in np.asarray(ln.x, dtype=float)[np.asarray(ln.y, dtype=float) == 0]]


def _triangle(x: float, y: float, color: str) -> str:
    """A small triangle pointing down, its top edge at ``y``."""
    return f'<path d="M{x - 3:.1f},{y:.1f} h6 l-3,5 z" fill="{color}"/>'


def _title(x0: float, y0: float, w: float, title: str, size: int) -> str:
    """A panel's title, centred, in a smaller font where it would be wider than the panel (to 7 px)."""
    fits = int(min(size, max(7, (w - 8) / (0.6 * max(len(title), 1)))))
    return _text(x0 + w / 2, y0 + 13, title, size=fits, anchor="middle")


def _text(x: float, y: float, text: str, *, size: int, anchor: str = "start", color: str = "#222",
          rotate: bool = False) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{turn}>'
            f"{html.escape(str(text))}</text>")
