"""A study's figures beyond the first screen: the interactions, one figure per suspect factor, every variant."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex

from diagnose.files import atomic_write
from diagnose.report_data.contrasts import Interaction, Suspect
from . import panels, plots, svg
from .plots import baselines, num, save, seed_band

__all__ = ["interactions_figure", "suspect_figure", "every_variant", "CONTRAST_COLORS"]

CONTRAST_COLORS = ("tab:blue", "tab:red")  # the lower-loss level, the higher-loss level
_CONTEXT_COLORS = ("tab:purple", "tab:olive", "tab:cyan", "tab:brown", "tab:pink", "tab:gray")


def interactions_figure(items: list[Interaction], out_png: str | Path, columns: int = 4,
                        outcome: str = "final validation loss", unit: str = "nats") -> Path | None:
    """Per combination, its switches' subsets as a grid of final losses (mean, interval, seeds)."""
    if not items:
        return None
    means = [c.variant.loss.mean for i in items for row in i.cells for c in row if c.variant and c.variant.loss]
    if not means:
        return None
    vmin, vmax = min(means), max(means)
    rows = -(-len(items) // columns)
    cols = min(columns, len(items))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 0.9 + 1.25 * rows * max(len(i.cells) for i in items)),
                             squeeze=False, layout="constrained")
    image = None
    for ax, item in zip(axes.flat, items):
        grid = np.full((len(item.cells), 2), np.nan)
        for r, row in enumerate(item.cells):
            for c, cell in enumerate(row):
                loss = cell.variant.loss if cell.variant else None
                if loss is not None:
                    grid[r, c] = loss.mean
                text = (f"{num(loss.mean)}\n[{num(loss.lo)}, {num(loss.hi)}]\n{loss.n} seeds" if loss is not None
                        else "not run")
                if cell.variant is not None and cell.variant.count("diverged"):
                    text += f", {cell.variant.count('diverged')} diverged"
                ax.text(c, r, text, ha="center", va="center", fontsize=7.5)
        image = ax.imshow(grid, cmap="RdYlGn_r", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks([0, 1], ["without", "with"], fontsize=7)
        ax.set_xlabel(item.switches[-1], fontsize=7.5)
        if len(item.switches) == 2:
            ax.set_yticks([0, 1], ["without", "with"], fontsize=7)
            ax.set_ylabel(item.switches[0], fontsize=7.5)
        else:
            ax.set_yticks(range(len(item.row_labels)), [_short(lbl) for lbl in item.row_labels], fontsize=6.5)
        title = " × ".join(item.switches) + f"\non {item.variant.base}"
        if item.interaction is not None and item.interaction.mean is not None:
            title += (f": interaction {num(item.interaction.mean, signed=True)} "
                      f"[{num(item.interaction.lo)}, {num(item.interaction.hi)}]")
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=f"{outcome} ({unit})")
    return save(fig, out_png)


def _short(label: str, width: int = 26) -> str:
    return label if len(label) <= width else label.replace(" + ", " +\n")


def suspect_figure(s: Suspect, refs: dict, out_png: str | Path, width: float = 13.4,
                   outcome: str = "final validation loss") -> Path | None:
    """A factor's levels against the loss on each context, and its contrast with the evidence beside it.

    Panels, left to right: final loss per level (one line per context); the
    contrast's two variants' training loss; then each evidence panel (branch
    balance, where attention lands late in training, ...), both variants in one
    panel each.
    """
    c = s.contrast
    evidence = []
    if c is not None:
        pair = [c.context.points[c.low].runs, c.context.points[c.high].runs]
        evidence = [fid for fid in c.panels if panels.has_data([r.path for runs in pair for r in runs], fid)]
    ncols = 1 + (c is not None) + len(evidence)
    # Fixed margins, not a layout engine: measuring every label took a third of the figure's time, and a
    # study has a suspect per factor it varies. Room at the left for the two-line axis label, below for "step".
    height = 3.0 + panels.LEGEND_ROOM  # the legends under the panels
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(1, ncols, width_ratios=[1.5] + [1.0] * (ncols - 1 - len(evidence))
                            + [1.15 if fid == "attention-map" else 1.0 for fid in evidence],
                            left=0.06, right=0.99, bottom=panels.LEGEND_ROOM / height, top=1 - 0.32 / height,
                            wspace=0.32)
    _levels_panel(fig.add_subplot(grid[0, 0]), s, outcome, refs.get("unit", "nats"))
    if c is not None:
        series = [(f"{s.factor}={lv}", color, [r.path for r in c.context.points[lv].runs])
                  for lv, color in zip((c.low, c.high), CONTRAST_COLORS)]
        ax = fig.add_subplot(grid[0, 1])
        for label, color, runs in series:
            seed_band(ax, runs, "loss", color=color, label=label)
        baselines(ax, refs, labels=False)
        ax.set_title(f"Training loss on {c.context.label}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        panels.legend_below(ax)
        for i, fid in enumerate(evidence):
            slot = grid[0, 2 + i]
            if fid == "attention-map":
                inner = slot.subgridspec(2, 1, hspace=0.75)  # each image's title and axis label between them
                shares = [panels.attention_share(runs) for _, _, runs in series]
                top = max((float(x[0].max()) for x in shares if x is not None), default=1.0)  # one scale for both
                for k, (label, _, runs) in enumerate(series):
                    panels.attention_image(fig.add_subplot(inner[k, 0]), runs, f"attention, {label}", vmax=top)
            else:
                panels.draw(fig.add_subplot(slot), fid, series)
    return save(fig, out_png)


def _levels_panel(ax, s: Suspect, outcome: str, unit: str) -> None:
    x = {lv: i for i, lv in enumerate(s.levels)}
    for k, ctx in enumerate(s.contexts):
        picked = s.contrast is not None and ctx is s.contrast.context
        color = "0.1" if picked else _CONTEXT_COLORS[k % len(_CONTEXT_COLORS)]
        points = sorted(((x[lv], v) for lv, v in ctx.points.items() if v.loss is not None), key=lambda p: p[0])
        xs = [p[0] for p in points]
        ax.plot(xs, [v.loss.mean for _, v in points], color=color, linewidth=2.2 if picked else 1.2, marker="o",
                markersize=5, label=f"{ctx.label} (own: {s.labels.get(ctx.own_level, ctx.own_level)})")
        for xi, v in points:
            if v.loss.lo is not None:
                ax.plot([xi, xi], [v.loss.lo, v.loss.hi], color=color, linewidth=1, alpha=0.5)
            seeds = [r.outcome for r in v.runs if r.outcome is not None]
            ax.scatter([xi + 0.06] * len(seeds), seeds, s=7, color=color, alpha=0.45,
                       linewidths=0)
    ax.set_xticks(range(len(s.levels)), [s.labels.get(lv, lv) for lv in s.levels], fontsize=7.5,
                  rotation=15 if len(s.levels) > 3 else 0)
    ax.set_xlim(-0.4, len(s.levels) - 0.6)
    ax.set_title(f"Loss per level of {s.factor}", fontsize=9)
    ax.set_ylabel(textwrap.fill(f"{outcome} ({unit})", 34), fontsize=8)  # two lines beside a 3.5-inch axis
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=6.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=1, borderaxespad=0)  # under the axes, one a line: each names a context


def every_variant(variants: dict[str, list[Path]], out_svg: str | Path, refs: dict, columns: int = 5) -> Path:
    """One panel per variant on shared axes: training loss (mean over seeds, their range shaded) and
    validation loss (points), with the corpus's reference losses; an SVG, as a study has thirty and more.

    Args:
        variants: panel title -> its runs.
        columns: panels per row.

    Raises:
        ValueError: no variant has a run.
    """
    variants = {k: v for k, v in variants.items() if v}
    if not variants:
        raise ValueError("no run with a metrics.csv to plot")
    refs_lines = [(label, to_hex(color), refs[key]) for key, label, color in plots.baseline_lines(refs)]
    charts, later, steps = [], [], []
    for name, runs in variants.items():
        chart = svg.Chart(name, ylabel=f"loss ({refs.get('unit', 'nats')})", legend=False)
        for metric, color, shaded in (("loss", svg.COLORS[0], True), ("val_loss", "#000000", False)):
            found = plots.seed_stats(runs, metric)
            if found is None:
                continue
            x, mean, low, high, seeds = found
            chart.lines.append(svg.Line(metric, x, mean, color, width=1.5, points=len(x) < plots.MARKERS_BELOW,
                                        band=(low, high) if shaded and seeds > 1 else None))
            later += [v for v in mean[len(mean) // 10 + 1:] if np.isfinite(v)]
            steps += [x.min(), x.max()]
        charts.append(chart)
    if steps:
        ends = np.array([min(steps), max(steps)])
        for chart in charts:
            chart.lines += [svg.Line(label, ends, np.full(2, float(value)), color, width=0.9, dashed=True)
                            for label, color, value in refs_lines]
    values = later + [v for _, _, v in refs_lines]
    if values:  # shared axes, cut above the later losses as plots.clip_start does
        top = max(later + [refs.get("ln_vocab") or 0.0]) * 1.1 if later else max(values) * 1.1
        for chart in charts:
            chart.ylim = (min(values) * 0.95, top)
    legend = [svg.Line("training loss (mean over seeds; shaded: their range)", np.zeros(0), np.zeros(0),
                       svg.COLORS[0]), svg.Line("validation loss", np.zeros(0), np.zeros(0), "#000000")]
    legend += [svg.Line(label, np.zeros(0), np.zeros(0), color, dashed=True) for label, color, _ in refs_lines]
    out_svg = Path(out_svg)
    atomic_write(out_svg, svg.document([(c, 1) for c in charts], columns, width=1340, row_height=210,
                                       title="Training and validation loss of every variant", legend=legend))
    return out_svg
