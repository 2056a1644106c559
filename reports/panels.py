"""One axes per instrument family, for one run (a line per column) or a few variants (a line per variant).

The families are the report figures a finding can point at
(:mod:`diagnose.findings.figures`); what each column means is
:mod:`diagnose.instruments.registry`'s.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from diagnose import runrecord
from diagnose.findings.figures import BY_ID, FAMILIES
from .plots import attention, metrics, num, seed_band

__all__ = ["PANELS", "family_columns", "has_data", "draw", "attention_share", "attention_image", "legend_below",
           "mark_zeros", "LEGEND_ROOM"]

# figure id -> its declaration (panel title, column prefixes, y label, log scale): the figures drawn from columns
PANELS = {fid: BY_ID[fid] for fid in FAMILIES}


def family_columns(frame, fid: str) -> list[str]:
    """The metrics columns a family's panel draws, each with data (positive data on a log panel)."""
    cols = [c for c in frame.columns if c.startswith(PANELS[fid].columns)]
    if fid == "branches" and any(c.endswith(("/position", "/content")) for c in cols):
        cols = [c for c in cols if c.endswith(("/position", "/content"))]  # a table against what it is added to
    if not cols:
        return []
    values = frame[cols].to_numpy(dtype=float)  # one array: a hundred runs' pages ask for every family
    with np.errstate(invalid="ignore"):
        keep = (values > 0).any(axis=0) if PANELS[fid].log else (~np.isnan(values)).any(axis=0)
    return [c for c, k in zip(cols, keep) if k]


def has_data(runs: list[Path], fid: str) -> bool:
    """Whether any of the runs has what the figure draws."""
    if fid == "attention-map":
        return any((Path(r) / runrecord.ATTENTION).is_file() for r in runs)
    return fid in PANELS and any(family_columns(metrics(r), fid) for r in runs)


def draw(ax, fid: str, series: list[tuple[str, str, list[Path]]]) -> bool:
    """Draws a family on ``ax``.

    Args:
        fid: a key of :data:`PANELS`.
        series: ``(label, colour, runs)``; one entry draws each column of the family,
            several draw one line per entry and kind of column (seeds as a band).

    Returns:
        False when no run has the family's columns (nothing drawn).
    """
    figure = PANELS[fid]
    drawn = False
    for label, color, runs in series:
        cols = sorted({c for r in runs for c in family_columns(metrics(r), fid)})
        if len(series) == 1:
            for col in cols:
                short = col.split("/", 1)[-1] if "/" in col else col
                width = 2.0 if col.endswith("/global") else 1.1
                line = seed_band(ax, runs, col, color=None, label=short)
                if line is not None:
                    line.set_linewidth(width)
                    drawn = True
            continue
        for col, style in _summary(cols, fid):
            line = seed_band(ax, runs, col, color=color, linestyle=style,
                             label=f"{label}: {_kind(col, fid)}" if _kind(col, fid) else label)
            drawn = drawn or line is not None
    if drawn:
        values = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), dtype=float)
                  if np.isfinite(v) and v > 0]
        if figure.log and values and max(values) / min(values) > 10:  # within a decade a linear axis reads better
            from matplotlib import ticker

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.LogFormatter())  # plain "0.01": no math text to typeset
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            mark_zeros(ax)
        if fid == "attention-entropy":
            ax.set_ylim(0, 1.05)  # normalised: 1 is uniform; autoscale would blow up a flat line's noise
        ax.set_title(figure.panel, fontsize=9)
        ax.set_ylabel(figure.ylabel, fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        legend_below(ax)
    return drawn


def legend_below(ax, most: int = 12) -> None:
    """The axes' legend under them (below the x label), in two columns: never on the data.
    The figure leaves room for it (LEGEND_ROOM inches)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles and len(handles) <= most:
        ax.legend(handles, labels, fontsize=6.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=2, handlelength=2.2, columnspacing=1.0, borderaxespad=0)


# Inches under a panel for its x label and a legend of up to 12 entries in two columns.
LEGEND_ROOM = 0.95


def mark_zeros(ax) -> None:
    """Zeros on a log axis (which has no 0): a triangle at the axes' bottom for each, and a legend entry saying so."""
    from matplotlib.transforms import blended_transform_factory

    at_bottom = blended_transform_factory(ax.transData, ax.transAxes)
    found = False
    for line in list(ax.get_lines()):
        y = np.asarray(line.get_ydata(), dtype=float)
        x = np.asarray(line.get_xdata(), dtype=float)[y == 0]
        if len(x):
            ax.plot(x, np.full(len(x), 0.015), linestyle="none", marker="v", markersize=4, color=line.get_color(),
                    transform=at_bottom, clip_on=False)
            found = True
    if found:
        ax.plot([], [], linestyle="none", marker="v", markersize=4, color="0.35",
                label="at the bottom: 0 (no place on a log axis)")


def _summary(cols: list[str], fid: str) -> list[tuple[str, str]]:
    """The columns that stand for a family when variants are compared, each with a line style."""
    if fid == "branches":
        styles = {"position": "--", "content": "-"}
        picked = {}
        for c in cols:  # one site is enough to tell a table from its content: the first of each kind
            picked.setdefault(c.rsplit("/", 1)[-1], c)
        return [(c, styles.get(kind, ":")) for kind, c in picked.items()]
    if fid == "gradients" and "grad_norm/global" in cols:
        return [("grad_norm/global", "-")]
    if fid == "output":
        return [(c, s) for c, s in (("out_zero_frac", "-"), ("target_at_floor", "--")) if c in cols]
    return [(c, "-") for c in cols[:1]] + [(c, "--") for c in cols[1:2]]


def _kind(col: str, fid: str) -> str:
    if fid == "branches":
        site, _, kind = col.rpartition("/")
        return f"{kind} ({site.split('/', 1)[-1]})"
    return col.split("/", 1)[-1] if fid != "gradients" else ""


def attention_share(runs: list[Path], late: bool = True) -> tuple[np.ndarray, list, int] | None:
    """Share of each hop's wins per memory slot at the first or last logged interval, summed over runs.

    Returns:
        (share[hop, slot], hop labels, step), or None without attention.csv.
    """
    tables = [t for t in map(_attention_blocks, runs) if t is not None]
    if not tables:
        return None
    step = min(max(t) for t in tables) if late else max(min(t) for t in tables)
    blocks = [t[step] for t in tables if step in t]
    if not blocks:
        return None
    hops = blocks[0][0]
    counts = sum(b[1] for b in blocks if b[0] == hops)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return share, list(hops), int(step)


def _attention_blocks(run: Path) -> dict | None:
    """A run's attention.csv as {step: (hops, counts[hop, slot])}, read once per build."""
    path = Path(run) / runrecord.ATTENTION
    if not path.is_file():
        return None
    stat = path.stat()
    return _blocks(str(run), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _blocks(run: str, _mtime: int, _size: int) -> dict | None:
    table = attention(run)
    if table is None or not len(table):
        return None
    cols = [c for c in table.columns if c.startswith("pos")]
    steps, hops, counts = table["step"].to_numpy(), table["hop"].to_numpy(), table[cols].to_numpy(dtype=float)
    blocks = {}
    for step in np.unique(steps):
        rows = np.flatnonzero(steps == step)
        rows = rows[np.argsort(hops[rows], kind="stable")]
        blocks[int(step)] = (tuple(hops[rows].tolist()), counts[rows])
    return blocks


def attention_image(ax, runs: list[Path], title: str, late: bool = True, vmax: float | None = None):
    """The attention share as an image (hops by slots); returns the image, or None without data.

    Args:
        vmax: the share at the top of the colour scale (default: this image's peak, so
            that attention spread over many slots still shows where it leans).
    """
    found = attention_share(runs, late)
    if found is None:
        return None
    share, hops, step = found
    top = vmax if vmax is not None else max(float(share.max()), 1e-9)
    image = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
    ax.set_title(f"{title}, step {step}", fontsize=8)
    ax.set_yticks(range(len(hops)), [f"hop {h}" for h in hops], fontsize=7)
    ax.set_xticks([0, share.shape[1] - 1], ["oldest", "current"], fontsize=7)
    ax.set_xlabel(f"memory slot (peak share {num(float(share.max()))})", fontsize=7)
    return image
