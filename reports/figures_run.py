"""Diagnostics of single runs: one figure per run for its own page, and families side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from diagnose.report_data import RunInfo, VariantInfo
from reports import panels
from reports import plots
from reports.plots import baselines, save, seed_band

__all__ = ["run_figure", "family_side_by_side", "attention_side_by_side", "RUN_PANELS"]

# A run page's panels, in reading order: the curve, then what moves the weights, then what the model computes.
RUN_PANELS = ("loss", "gradients", "updates", "attention-entropy", "branches", "output", "attention-map")


def run_figure(run: RunInfo, refs: dict, out_png: str | Path, dpi: int = 80) -> Path:
    """Every family of one run on one figure: loss, gradients, updates, attention, branch balance, output.

    Panels without data in this run say so instead of vanishing, so every run page
    has the same layout.
    """
    # Fixed margins, not a layout engine: a study has a hundred run pages, and the
    # engine's measuring of every label took 40% of each figure's time.
    fig = plt.figure(figsize=(16, 7.2))
    grid = fig.add_gridspec(2, 4, left=0.045, right=0.985, top=0.95, bottom=0.08, wspace=0.28, hspace=0.32)
    slots = iter([grid[0, 0], grid[0, 1], grid[0, 2], grid[0, 3], grid[1, 0], grid[1, 1], grid[1, 2:]])
    for fid in RUN_PANELS:
        slot = next(slots)
        if fid == "loss":
            ax = fig.add_subplot(slot)
            seed_band(ax, [run.path], "loss", color="tab:blue", label="training loss")
            seed_band(ax, [run.path], "valid_loss", color="black", label="validation loss")
            baselines(ax, refs)
            plots.clip_start(ax, refs)
            ax.set_title("Loss", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.set_ylabel("nats", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, frameon=False)
        elif fid == "attention-map":
            inner = slot.subgridspec(1, 2)
            image = None
            shares = [panels.attention_share([run.path], late) for late in (False, True)]
            top = max((float(x[0].max()) for x in shares if x is not None), default=1.0)  # early and late: one scale
            for k, (late, name) in enumerate(((False, "early"), (True, "late"))):
                ax = fig.add_subplot(inner[0, k])
                image = panels.attention_image(ax, [run.path], f"where attention lands, {name}", late, top) or image
                if image is None:
                    _empty(ax, "Where attention lands")

        else:
            ax = fig.add_subplot(slot)
            if not panels.draw(ax, fid, [(run.label, None, [run.path])]):
                _empty(ax, panels.PANELS[fid][0])
    return save(fig, out_png, dpi=dpi)


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
    fig, axes = plt.subplots(1, len(runs), figsize=(width, 3.1), sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=0.16, top=0.9, wspace=0.12)
    for ax, (_, run) in zip(axes[0], runs):
        if not panels.draw(ax, fid, [(run.label, None, [run.path])]):
            _empty(ax, panels.PANELS[fid][0])
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
