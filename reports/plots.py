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

from diagnose import runrecord, studydir  # noqa: E402

__all__ = ["loss_curves", "family_figure", "attention_heatmaps", "compare"]

# Small multiples of a whole study are large (4 panels a row, tens of rows): 90 dpi keeps
# them sharp on screen and their rendering within the report's time budget.
_SMALL_MULTIPLES_DPI = 90

_BASELINES = (("ln_vocab", "ln V", "0.55"), ("unigram_entropy", "unigram entropy", "tab:orange"),
              ("bayes_floor", "Bayes floor", "tab:green"))


def _variant_runs(ablation_dir: Path) -> dict[str, list[Path]]:
    """Per variant, its runs whose records are whole, in manifest order."""
    manifest = studydir.read_manifest(ablation_dir)
    runs: dict[str, list[Path]] = {}
    for entry in manifest["runs"]:
        run = studydir.run_path(ablation_dir, entry["id"])
        if run.is_dir() and not runrecord.record_problems(run):
            runs.setdefault(entry["variant"], []).append(run)
    return runs


def loss_curves(ablation_dir: str | Path, out_png: str | Path, metric: str = "valid_loss",
                columns: int = 4) -> Path:
    """Small multiples of one metric per variant, seeds as a band (min to max) around their mean.

    Panels share both axes so heights compare at a glance; the corpus baselines
    (ln V, unigram entropy, Bayes floor) are drawn on every panel.

    Args:
        ablation_dir: an ABLATION_DIR (see diagnose.studydir).
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
    fig.savefig(tmp, dpi=_SMALL_MULTIPLES_DPI)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def family_figure(runs: dict[str, Path], columns_prefix: str | tuple[str, ...], out_png: str | Path, *,
                  ylabel: str, log: bool = False) -> Path | None:
    """One panel per run (side by side, shared y), one line per metrics.csv column with the prefix.

    Args:
        runs: panel title -> run directory (e.g. {"as-posted": ..., "paper": ...}).
        columns_prefix: a prefix or tuple of prefixes, e.g. "grad_norm/" or ("rms/",).
        out_png: where to write.
        ylabel: the y axis label, with units.
        log: log-scale y (for norms and ratios spanning decades).

    Returns:
        The path written, or None when no run has such a column.
    """
    prefixes = (columns_prefix,) if isinstance(columns_prefix, str) else tuple(columns_prefix)
    frames = {title: runrecord.read_metrics(path) for title, path in runs.items()}
    cols = {t: [c for c in f.columns if c.startswith(prefixes)] for t, f in frames.items()}
    if not any(cols.values()):
        return None
    fig, axes = plt.subplots(1, len(frames), figsize=(4.2 * len(frames), 3.0), sharey=True, squeeze=False)
    for ax, (title, frame) in zip(axes[0], frames.items()):
        for col in cols[title]:
            data = frame[["step", col]].dropna()
            if log:
                data = data[data[col] > 0]
            ax.plot(data["step"], data[col], linewidth=1.2, label=col.split("/", 1)[-1] or col)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
        if cols[title]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return _save(fig, out_png)


def attention_heatmaps(runs: dict[str, Path], out_png: str | Path) -> Path | None:
    """Where attention lands: winning-slot share per (hop, position), early vs late, per run."""
    tables = {}
    for title, path in runs.items():
        file = Path(path) / runrecord.ATTENTION
        if file.is_file():
            import pandas as pd

            tables[title] = pd.read_csv(file)
    if not tables:
        return None
    fig, axes = plt.subplots(len(tables), 2, figsize=(8.4, 0.6 + 2.4 * len(tables)), squeeze=False,
                             layout="constrained")
    for row, (title, table) in zip(axes, tables.items()):
        steps = sorted(table["step"].unique())
        for ax, (label, step) in zip(row, (("early", steps[0]), ("late", steps[-1]))):
            block = table[table["step"] == step].sort_values("hop")
            counts = block[[c for c in block.columns if c.startswith("pos")]].to_numpy(dtype=float)
            share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            image = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{title}: {label} (step {step})", fontsize=9)
            ax.set_ylabel("hop")
            ax.set_yticks(range(share.shape[0]), [str(h) for h in block["hop"]])
            ax.set_xlabel("memory slot (right: current word)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of the interval's wins")
    return _save(fig, out_png)


def _save(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def compare(run_dirs: list[str | Path], out_png: str | Path, metric: str = "loss") -> Path:
    """One metric's curves for any runs, overlaid; runs that differ only by seed form one band.

    Args:
        run_dirs: run directories (from `diagnose train`, an ablation, or a Monitor).
        out_png: where to write.
        metric: a metrics.csv column.

    Raises:
        ValueError: no run has the metric (the message lists what they have).
    """
    import json

    groups: dict[str, list[Path]] = {}
    labels: dict[str, str] = {}
    for path in map(Path, run_dirs):
        config = runrecord.read_config(path)
        key_cfg = json.loads(json.dumps(config))
        key_cfg.get("train", {}).pop("seed", None)
        key = json.dumps(key_cfg, sort_keys=True)
        groups.setdefault(key, []).append(path)
        labels.setdefault(key, path.name)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    drawn, seen_columns = 0, set()
    for key, paths in groups.items():
        curves = []
        for path in paths:
            frame = runrecord.read_metrics(path)
            seen_columns.update(frame.columns)
            if metric in frame:
                curves.append(frame[["step", metric]].dropna().set_index("step")[metric])
        if not curves:
            continue
        steps = sorted(set().union(*(c.index for c in curves)))
        stacked = np.array([c.reindex(steps).interpolate().to_numpy() for c in curves])
        label = labels[key] + (f" ({len(curves)} seeds)" if len(curves) > 1 else "")
        (line,) = ax.plot(steps, np.nanmean(stacked, 0), linewidth=1.5, label=label)
        if len(curves) > 1:
            ax.fill_between(steps, np.nanmin(stacked, 0), np.nanmax(stacked, 0), alpha=0.2,
                            color=line.get_color(), linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        known = ", ".join(sorted(c for c in seen_columns if c not in ("step", "epoch"))[:12])
        raise ValueError(f"no run has a '{metric}' column; try one of: {known}")
    values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")  # the curves span decades
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, out_png)
