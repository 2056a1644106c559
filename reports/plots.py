"""Figures drawn from run records (matplotlib, Agg): rendering only, no diagnosis.

Everything here reads the on-disk record through :mod:`diagnose.runrecord` and
writes PNG files; nothing trains or judges.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diagnose import runrecord  # noqa: E402

__all__ = ["loss_curves"]

_BASELINES = (("ln_vocab", "ln V", "0.55"), ("unigram_entropy", "unigram entropy", "tab:orange"),
              ("bayes_floor", "Bayes floor", "tab:green"))


def _variant_runs(ablation_dir: Path) -> dict[str, list[Path]]:
    manifest = runrecord.read_json(ablation_dir / "manifest.json")
    runs: dict[str, list[Path]] = {}
    for entry in manifest["runs"]:
        run = ablation_dir / "runs" / entry["id"]
        if (run / runrecord.METRICS).is_file():
            runs.setdefault(entry["variant"], []).append(run)
    return runs


def loss_curves(ablation_dir: str | Path, out_png: str | Path, metric: str = "valid_loss",
                columns: int = 4) -> Path:
    """Small multiples of one metric per variant, seeds as a band (min to max) around their mean.

    Panels share both axes so heights compare at a glance; the corpus baselines
    (ln V, unigram entropy, Bayes floor) are drawn on every panel.

    Args:
        ablation_dir: an ABLATION_DIR with manifest.json and runs/.
        out_png: where to write the figure.
        metric: a metrics.csv column (validation rows are sparse; NaNs are skipped).
        columns: panels per row.

    Returns:
        The path written.
    """
    ablation_dir, out_png = Path(ablation_dir), Path(out_png)
    runs = _variant_runs(ablation_dir)
    if not runs:
        raise ValueError(f"{ablation_dir} has no run with a metrics.csv to plot")
    baselines = {}
    first = runrecord.read_summary(next(iter(runs.values()))[0]).get("baselines") or {}
    for key, _, _ in _BASELINES:
        if first.get(key) is not None:
            baselines[key] = first[key]
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (variant, paths) in zip(axes.flat, runs.items()):
        curves = []
        for path in paths:
            frame = runrecord.read_metrics(path)
            if metric in frame:
                frame = frame[["step", metric]].dropna()
                curves.append(frame.set_index("step")[metric])
        if curves:
            steps = sorted(set().union(*(c.index for c in curves)))
            stacked = np.array([c.reindex(steps).interpolate().to_numpy() for c in curves])
            ax.fill_between(steps, np.nanmin(stacked, 0), np.nanmax(stacked, 0), alpha=0.25, color="tab:blue",
                            linewidth=0)
            ax.plot(steps, np.nanmean(stacked, 0), color="tab:blue", linewidth=1.5)
        for key, label, color in _BASELINES:
            if key in baselines:
                ax.axhline(baselines[key], color=color, linewidth=0.8, linestyle="--", label=label)
        ax.set_title(variant, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (nats)")
    for ax in axes[-1, :]:
        ax.set_xlabel("step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:  # one legend for all panels, outside the data
        fig.legend(handles, labels, loc="upper center", ncol=len(handles), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
