"""Diagnostics of single runs: one figure per run for its own page, and families side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex

from diagnose.files import atomic_write
from diagnose.findings.figures import RUN_ORDER
from diagnose.report_data import RunInfo, VariantInfo
from . import panels, plots, svg
from .plots import metrics, num, save

__all__ = ["run_figure", "run_panels", "family_side_by_side", "attention_side_by_side", "RUN_PANELS"]

# A run page's panels, in reading order (diagnose.findings.figures): the curve, then what moves the weights, then
# what the model computes, the two attention maps last.
RUN_PANELS = RUN_ORDER
_WIDTH, _ROW = 1340, 290  # px: the page's width, four panels a row


def run_panels(run: RunInfo) -> list[str]:
    """The panels of :data:`RUN_PANELS` a run's page shows: the loss, and each family the run recorded
    (a Keras model's record has no attention or position tables: no empty panels for them)."""
    return [fid for fid in RUN_PANELS if fid == "loss" or panels.has_data([run.path], fid)]


def run_figure(run: RunInfo, refs: dict, out_svg: str | Path) -> Path:
    """Every family of one run that it recorded as one SVG (:func:`run_panels`): loss, gradients, updates,
    attention, branch balance, output.

    Plain SVG (:mod:`diagnose.reports.svg`), not matplotlib: a study has a hundred and more
    run pages, and a matplotlib figure of these panels costs about a second each.
    """
    frame = metrics(run.path)
    charts: list[tuple[object, int]] = []
    for fid in run_panels(run):
        if fid == "loss":
            charts.append((_loss_chart(frame, refs), 1))
        elif fid == "attention-map":
            found = [panels.attention_share([run.path], late) for late in (False, True)]
            top = max((float(f[0].max()) for f in found if f is not None), default=1.0)  # early and late: one scale
            for f, name in zip(found, ("early", "late")):
                title = f"where attention lands, {name}" + (f", step {f[2]}" if f else "")
                charts.append((svg.Heatmap(title, f[0] if f else None, [f"hop {h}" for h in f[1]] if f else [],
                                           f"memory slot (peak share {num(float(f[0].max()))})" if f else "",
                                           max(top, 1e-9), ("oldest", "current")), 1))
        else:
            charts.append((_family_chart(frame, fid), 1))
    out_svg = Path(out_svg)
    atomic_write(out_svg, svg.document(charts, columns=4, width=_WIDTH, row_height=_ROW,
                                       title=f"Diagnostics of {run.label}"))
    return out_svg


def _series(frame, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of a column where it has a value (validations are every few rows)."""
    if column not in frame:
        return None
    y = frame[column].to_numpy(dtype=float)
    keep = ~np.isnan(y)
    return (frame["step"].to_numpy(dtype=float)[keep], y[keep]) if keep.any() else None


def _loss_chart(frame, refs: dict) -> svg.Chart:
    chart = svg.Chart("Loss", ylabel=refs.get("unit", "nats"))
    for column, label, color in (("loss", "training loss", svg.COLORS[0]), ("val_loss", "validation loss", "#000")):
        found = _series(frame, column)
        if found is not None:
            x, y = found
            chart.lines.append(svg.Line(label, x, y, color, width=1.6, points=len(x) < plots.MARKERS_BELOW))
    if chart.lines:
        steps = np.concatenate([ln.x for ln in chart.lines])
        ends = np.array([steps.min(), steps.max()])
        for key, label, color in plots.baseline_lines(refs):
            chart.lines.append(svg.Line(label, ends, np.full(2, float(refs[key])), to_hex(color), width=0.9,
                                        dashed=True))
        # As plots.clip_start: a first loss far above the rest (a clipped cross-entropy near 11) is cut at the frame.
        later = [v for ln in chart.lines[:2] for v in ln.y[len(ln.y) // 10 + 1:] if np.isfinite(v)]
        if later:
            chart.ylim = (None, max(max(later), refs.get("ln_vocab") or 0.0) * 1.1)
    return chart


def _family_chart(frame, fid: str) -> svg.Chart:
    figure = panels.PANELS[fid]
    chart = svg.Chart(figure.panel, ylabel=figure.ylabel)
    for k, column in enumerate(panels.family_columns(frame, fid)):
        found = _series(frame, column)
        if found is not None:
            x, y = found
            short = column.split("/", 1)[-1] if "/" in column else column
            chart.lines.append(svg.Line(short, x, y, svg.COLORS[k % len(svg.COLORS)],
                                        width=2.0 if column.endswith("/global") else 1.2,
                                        points=len(x) < plots.MARKERS_BELOW))
    values = np.concatenate([ln.y[np.isfinite(ln.y) & (ln.y > 0)] for ln in chart.lines]) if chart.lines else []
    # Within a decade a linear axis reads better.
    chart.log = bool(figure.log and len(values) and values.max() / values.min() > 10)
    if fid == "attention-entropy":
        chart.ylim = (0.0, 1.05)  # normalised: 1 is uniform
    return chart


def _empty(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, "not recorded in this run", ha="center", va="center", fontsize=8, color="0.5",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def family_side_by_side(variants: list[VariantInfo], fid: str, out_png: str | Path) -> Path | None:
    """One panel per variant (its first seed), one line per column of the family; None without data."""
    runs = [(v.name, v.runs[0]) for v in variants if v.runs]
    if not any(panels.has_data([r.path], fid) for _, r in runs):
        return None
    width = 4.4 * len(runs)
    height = 2.6 + panels.LEGEND_ROOM  # each panel's legend under it
    fig, axes = plt.subplots(1, len(runs), figsize=(width, height), sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=panels.LEGEND_ROOM / height,
                        top=1 - 0.3 / height, wspace=0.12)
    for ax, (_, run) in zip(axes[0], runs):
        if not panels.draw(ax, fid, [(run.label, None, [run.path])]):
            _empty(ax, panels.PANELS[fid].panel)
        ax.set_title(run.label, fontsize=9)
    return save(fig, out_png)


def attention_side_by_side(variants: list[VariantInfo], out_png: str | Path) -> Path | None:
    """Where attention lands early and late, one row per variant (its first seed); None without attention.csv."""
    runs = [v.runs[0] for v in variants if v.runs and panels.has_data([v.runs[0].path], "attention-map")]
    if not runs:
        return None
    fig, axes = plt.subplots(len(runs), 2, figsize=(8.4, 0.6 + 2.2 * len(runs)), squeeze=False,
                             layout="constrained")
    image = None
    for row, run in zip(axes, runs):
        for ax, (late, name) in zip(row, ((False, "early"), (True, "late"))):
            image = panels.attention_image(ax, [run.path], f"{run.label}: {name}", late) or image
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of the interval's wins")
    return save(fig, out_png)
