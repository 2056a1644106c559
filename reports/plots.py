"""Drawing primitives every report figure shares (matplotlib, Agg): rendering only, no diagnosis.

The seed band (a mean over seeds and their range) is drawn here once, for the
headline, the small multiples, the suspects' contrasts and ``diagnose compare``;
so are the corpus's reference lines, the one number format and the atomic save.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diagnose import runrecord, studydir  # noqa: E402
from diagnose.files import umask  # noqa: E402
from diagnose.findings.base import fmt  # noqa: E402
from diagnose.outputs import COMPARE_MARK  # noqa: E402
from diagnose.report_data import run_label  # noqa: E402

__all__ = ["num", "metrics", "attention", "seed_band", "baselines", "clip_start", "save", "seed_stats", "compare",
           "distinct_styles", "BASELINES", "baseline_lines", "baseline_words", "MARKERS_BELOW"]

# The reference losses drawn as dashed lines: (key in the axis' refs, label, colour, what it is).
BASELINES = (("ln_vocab", "ln V", "0.55", "uniform guess"),
             ("unigram_entropy", "unigram entropy", "tab:orange", "word frequencies only"),
             ("bayes_floor", "Bayes floor", "tab:green", "the best any model can do"))
# A Keras model's: what a model that learned nothing scores (summary.json's baselines).
KERAS_BASELINES = (("ln_vocab", "ln(classes)", "0.55", "a uniform guess"),
                   ("constant_loss", "best constant prediction", "tab:orange", "the label frequencies alone"))


def baseline_lines(refs: dict) -> list[tuple[str, str, str]]:
    """(key, label, colour) of each reference loss the axis has: a Keras model's or the corpus's."""
    table = KERAS_BASELINES if refs.get("kind") == "keras" else BASELINES
    return [(key, label, color) for key, label, color, _ in table if refs.get(key) is not None]


def baseline_words(refs: dict) -> str:
    """The dashed lines in a caption's words ("ln V (uniform guess), ..."); empty without any."""
    table = KERAS_BASELINES if refs.get("kind") == "keras" else BASELINES
    return ", ".join(f"{label} ({what})" for key, label, _, what in table if refs.get(key) is not None)
# Below this many points a curve gets markers: a validation curve of a few passes
# reads as points joined, not as a smooth line it is not.
MARKERS_BELOW = 30


def num(x, signed: bool = False) -> str:
    """The report's one number format (the findings' own: 4 significant figures); 'n/a' for None."""
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    text = fmt(x)
    return f"+{text}" if signed and isinstance(x, (int, float)) and x > 0 else text


def metrics(run_dir: str | Path):
    """A run's metrics.csv, read once per build (keyed by the file's size and time)."""
    path = Path(run_dir) / runrecord.METRICS
    stat = path.stat()
    return _metrics(str(run_dir), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _metrics(run_dir: str, _mtime: int, _size: int):
    return runrecord.read_metrics(run_dir)


def attention(run_dir: str | Path):
    """A run's attention.csv, read once per build like :func:`metrics`; None where it has none."""
    path = Path(run_dir) / runrecord.ATTENTION
    if not path.is_file():
        return None
    stat = path.stat()
    return _attention(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _attention(path: str, _mtime: int, _size: int):
    import pandas as pd

    return pd.read_csv(path)


def seed_stats(runs: list[Path], metric: str):
    """(steps, mean, low, high, seeds) of a metric over runs, aligned on their logged steps; None without it.

    Rows without the metric (validation between passes) are skipped; a step one seed
    did not log is interpolated between its neighbours, never extrapolated.
    """
    curves = []
    for run in runs:
        frame = metrics(run)
        if metric in frame:
            series = frame[["step", metric]].dropna()
            series = series[np.isfinite(series[metric])]
            if len(series):
                curves.append(series.set_index("step")[metric])
    if not curves:
        return None
    if all(c.index.equals(curves[0].index) for c in curves):  # seeds of one variant log the same steps
        steps = list(curves[0].index)
        stacked = np.array([c.to_numpy(dtype=float) for c in curves])
    else:
        steps = sorted(set().union(*(c.index for c in curves)))
        stacked = np.array([c.reindex(steps).interpolate(limit_area="inside").to_numpy() for c in curves])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a step no seed logged: an empty mean, not drawn
            mean, low, high = np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)
    return np.asarray(steps, dtype=float), mean, low, high, len(curves)


def seed_band(ax, runs: list[Path], metric: str, *, color: str, label: str | None = None, linestyle: str = "-",
              band: bool = True):
    """One line for the mean over seeds of a metric, with the seeds' range as a band around it.

    Returns the line, or None when no run has the metric (see :func:`seed_stats`).
    """
    found = seed_stats(runs, metric)
    if found is None:
        return None
    steps, mean, low, high, seeds = found
    marker = "o" if len(steps) < MARKERS_BELOW else None
    (line,) = ax.plot(steps, mean, color=color, linewidth=1.6, linestyle=linestyle, marker=marker, markersize=3,
                      label=label)
    if band and seeds > 1:
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    return line


def baselines(ax, values: dict, *, labels: bool = True) -> None:
    """The reference losses as dashed lines (:func:`baseline_lines`)."""
    for key, label, color in baseline_lines(values):
        if values.get(key) is not None:
            ax.axhline(values[key], color=color, linewidth=0.8, linestyle="--", label=label if labels else None)


def clip_start(ax, refs: dict) -> None:
    """Cuts the y axis above the curves' later values and ln V: a first logged loss far above
    (a ReLU output's clipped cross-entropy starts near 11 nats) would flatten everything after it."""
    values = [y for line in ax.get_lines() if len(line.get_ydata()) > 2
              for y in np.asarray(line.get_ydata(), dtype=float)[len(line.get_ydata()) // 10 + 1:]]
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return
    top = max(max(values), refs.get("ln_vocab") or 0.0) * 1.1
    if ax.get_ylim()[1] > top:
        ax.set_ylim(top=top)


def save(fig, out_png: str | Path, dpi: int = 100, tight: bool = False, metadata: dict | None = None) -> Path:
    """Writes the figure by a rename (no half-written PNG) and closes it.

    The temporary file is made new beside the target (never a name that could already
    be there, say a link to a file elsewhere).
    """
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_png.parent, prefix=f".{out_png.name[:40]}.", suffix=out_png.suffix or ".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=(out_png.suffix or ".png")[1:], dpi=dpi, bbox_inches="tight" if tight else None,
                        metadata=metadata)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, out_png)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out_png


def distinct_styles(n: int) -> list[tuple[str, str]]:
    """``n`` (colour, line style) pairs, no two alike: matplotlib's ten colours, then tab20's twenty,
    then those twenty again dashed and dotted (a compare of 33 runs repeats no colour and style)."""
    if n <= 10:
        return [(f"C{i}", "-") for i in range(n)]
    colors = [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors]
    return [(colors[i % 20], ("-", "--", ":")[i // 20 % 3]) for i in range(n)]


def compare(run_dirs: list[str | Path], out_png: str | Path, metric: str = "loss") -> Path:
    """One metric's curves for any runs, overlaid; runs that differ only by seed form one band.

    Runs of a study are labelled by variant (and seed, where a band has one run), as
    the report names them; other runs by their directory.

    Raises:
        ValueError: no run has the metric (the message lists what they have).
    """
    metric = runrecord.keras_name(metric)  # an old name (valid_loss) asks for what the record calls it now
    groups: dict[str, list[Path]] = {}
    names: dict[str, list[tuple]] = {}
    for path in map(Path, run_dirs):
        config = json.loads(json.dumps(runrecord.read_config(path)))
        seed = config.get("train", {}).pop("seed", None)
        key = json.dumps(config, sort_keys=True)
        entry = studydir.run_entry(path)
        groups.setdefault(key, []).append(path)
        names.setdefault(key, []).append((entry["variant"], entry.get("seed", seed)) if entry else (path.name, None))
    styles = distinct_styles(len(groups))
    columns = 1 if len(groups) <= 8 else 2 if len(groups) <= 24 else 3
    rows = -(-len(groups) // columns)
    # The legend under the axes, every entry shown: the figure grows by its rows, the axes keep their size.
    fig = plt.figure(figsize=(7.5 + 1.5 * (columns - 1), 3.6 + 0.6 + 0.19 * rows))
    ax = fig.add_axes((0.09, (0.6 + 0.19 * rows) / fig.get_figheight() + 0.02, 0.88,
                       3.3 / fig.get_figheight()))
    drawn, seen = 0, set()
    for key, paths in groups.items():
        seen.update(c for p in paths for c in metrics(p).columns)
        variant, seed = names[key][0]
        label = run_label(variant, seed) if len(paths) == 1 else f"{variant} ({len(paths)} seeds)"
        color, linestyle = styles[drawn]
        if seed_band(ax, paths, metric, color=color, linestyle=linestyle, label=label) is not None:
            drawn += 1
    if not drawn:
        plt.close(fig)
        # Every column the runs have: the record's own curves first (loss, val_loss...), then the instruments'.
        base = [c for c in runrecord.BASE_COLUMNS if c in seen and c not in ("step", "epoch")]
        known = ", ".join(base + sorted(c for c in seen if c not in base and c not in ("step", "epoch")))
        raise ValueError(f"no run has a '{metric}' column; try one of: {known}")
    values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")  # the curves span decades
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=columns,
               fontsize=7.5, frameon=False, handlelength=2.6)
    return save(fig, out_png, dpi=110, metadata={"Software": COMPARE_MARK})  # marked: a later compare may replace it
