"""The first screen's two figures: the verdict as a picture, and the curves it is about."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from diagnose.report_data import Headline, Row
from .plots import baselines, num, save, seed_band

__all__ = ["verdict_figure", "verdict_height", "headline_curves", "COLORS"]

# One colour per role, the same in both figures and the page's text.
COLORS = {"faulty": "tab:red", "fix": "tab:green", "reference": "tab:blue", "settled": "0.15", "open": "0.6"}
_ROW_INCHES = 0.26
# The verdict figure's height cap: ~680 px at 100 dpi, what the first screen's 900 leave
# under the title and the three-line answer above it.
_MAX_INCHES = 6.8


def verdict_figure(head: Headline, refs: dict, out_png: str | Path, width: float = 8.2,
                   outcome: str = "final validation loss") -> Path | None:
    """Each switch's loss against its base's, with its interval and the verdict's status for it.

    Established: filled; negligible (ruled out: the interval within the verdict's
    margin): a filled grey diamond; inconclusive: hollow. The seeds each rests on, and
    the interval's level where the verdict widened it (it added seeds and read it
    again), are written at its right.

    Gap mode: one group of switches on the faulty base (to the reference's choices,
    and their combinations), one on the reference (to the faulty choices), on one
    loss axis with both bases marked, so a switch that reaches the reference's line
    closes the whole gap. The share of the gap each closes or opens is written at
    its right; the smallest fix is drawn in the fix colour.
    """
    if not head.rows:
        return None
    groups = _groups(head)
    n = sum(len(rows) + 1 for _, rows in groups)
    height = verdict_height(head)
    fig, ax = plt.subplots(figsize=(width, height))
    y, ticks, labels, spans, intervals = n - 1, [], [], [], []
    for title, rows in groups:
        ax.text(0.0, y, title, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8.5,
                fontweight="bold", color="0.25")
        y -= 1
        for row in rows:
            _row(ax, row, y, head.unit)
            ticks.append(y)
            labels.append(row.label)
            spans += [row.base.loss.mean, _at(row, row.effect.effect.mean)]
            if row.effect.effect.lo is not None and row.effect.effect.hi is not None:
                intervals.append((y, _at(row, row.effect.effect.lo), _at(row, row.effect.effect.hi), row))
            y -= 1
    lines = [(role, v) for role, v in (("faulty", head.faulty), ("reference", head.reference))
             if v is not None and v.loss is not None]
    for role, v in lines:
        ax.axvline(v.loss.mean, color=COLORS[role], linewidth=1.2, linestyle="--", zorder=0)
        # Two bases' labels lean away from each other (the lower loss's to the left of its line; on a tie the
        # reference's), so they never overlap however close the bases end.
        other = next((w.loss.mean for r, w in lines if r != role), None)
        side = "center" if other is None else "right" if (v.loss.mean, role == "faulty") < (other, role != "faulty") \
            else "left"
        ax.text(v.loss.mean, 1.0, f" {v.name} {num(v.loss.mean)} ", transform=ax.get_xaxis_transform(),
                color=COLORS[role], fontsize=8, ha=side, va="bottom")
        spans.append(v.loss.mean)
    if refs.get("bayes_floor") is not None:
        ax.axvline(refs["bayes_floor"], color="0.75", linewidth=0.8, linestyle=":", zorder=0)
        spans.append(refs["bayes_floor"])
    lo, hi = min(spans), max(spans)
    width = hi - lo or 1.0
    # The intervals shown whole, up to half the means' span beyond them; one wider is cut at the frame, an
    # arrow there saying it goes on (an inconclusive interval over a few seeds can be many times the gap).
    lo = max(min([lo] + [a for _, a, _, _ in intervals]), lo - 0.5 * width)
    hi = min(max([hi] + [b for _, _, b, _ in intervals]), hi + 0.5 * width)
    pad = 0.05 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    for y, a, b, row in intervals:
        color = _color(row)
        for end, edge, marker in ((a, lo - pad, "<"), (b, hi + pad, ">")):
            if (end < edge) if marker == "<" else (end > edge):
                ax.plot([edge], [y], marker=marker, markersize=6, color=color, clip_on=False, zorder=4)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks(ticks, labels, fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), [r for _, rows in groups for r in rows]):
        if row.is_fix:
            tick.set_color(COLORS["fix"])
            tick.set_fontweight("bold")
    ax.set_xlabel(f"{outcome} ({head.unit}; lower is better)", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    _legend(fig, head)
    fig.tight_layout(rect=(0, 0.3 / height, 1, 1))
    return save(fig, out_png)


def verdict_height(head: Headline) -> float:
    """The verdict figure's height in inches: a row per switch and group title, shrunk (to a floor)
    so that a study of the default's size fits the first screen; the curves beside it match it."""
    n = sum(len(rows) + 1 for _, rows in _groups(head))
    row = min(_ROW_INCHES, max(0.16, (_MAX_INCHES - 1.0) / max(n, 1)))
    return 1.0 + row * n


def _groups(head: Headline) -> list[tuple[str, list[Row]]]:
    if head.mode == "effects":
        rows = sorted(head.rows, key=lambda r: r.effect.effect.mean)
        return [(f"switches on {rows[0].base.name}" if len({r.base.name for r in rows}) == 1 else "switches", rows)]
    faulty = head.faulty.name if head.faulty else "faulty"
    reference = head.reference.name if head.reference else "reference"
    fixes = sorted((r for r in head.rows if r.base.name == faulty), key=lambda r: r.effect.effect.mean)
    breaks = sorted((r for r in head.rows if r.base.name != faulty), key=lambda r: -r.effect.effect.mean)
    groups = [(f"switched on {faulty}", fixes), (f"switched on {reference} (to {faulty}'s choices)", breaks)]
    return [g for g in groups if g[1]]


def _at(row: Row, effect: float | None) -> float | None:
    return None if effect is None else row.base.loss.mean + effect


# How each status is drawn: (marker, filled, bar alpha). Established and negligible are
# both settled (the interval answers), inconclusive is open: hollow.
_STYLE = {"established": ("o", True, 0.9), "negligible": ("D", True, 0.6), "inconclusive": ("o", False, 0.45)}


def _status(row: Row) -> str:
    e = row.effect
    return e.status if e.status in _STYLE else ("established" if e.established else "inconclusive")


def _color(row: Row) -> str:
    return COLORS["fix"] if row.is_fix else COLORS["settled"] if _status(row) == "established" else COLORS["open"]


def _row(ax, row: Row, y: float, unit: str) -> None:
    e = row.effect
    status = _status(row)
    marker, filled, alpha = _STYLE[status]
    color = _color(row)
    x0, x = row.base.loss.mean, _at(row, e.effect.mean)
    ax.plot([x0, x], [y, y], color=color, linewidth=0.8, alpha=0.5, zorder=1)  # the move from the base
    if e.effect.lo is not None and e.effect.hi is not None:
        ax.plot([_at(row, e.effect.lo), _at(row, e.effect.hi)], [y, y], color=color, linewidth=2.6,
                alpha=alpha, solid_capstyle="butt", zorder=2)
    ax.plot([x], [y], marker=marker, markersize=6.5 if marker == "o" else 5.5, color=color,
            markerfacecolor=color if filled else "white", markeredgewidth=1.5, zorder=3)
    note = []
    if e.share is not None:
        verb = ("opens", "narrows") if e.side == "break" else ("closes", "widens")  # by the share's sign
        note.append(f"{verb[0]} {e.share:.0%}" if e.share >= 0 else f"{verb[1]} {-e.share:.0%}")
    else:
        note.append(f"{num(e.effect.mean, signed=True)} {unit}")
    if status != "established":
        note.append(status)
    seeds = f"{e.effect.n} seeds"
    if abs(e.effect.confidence - 0.95) > 1e-9:  # read again after seeds were added: a wider interval
        seeds += f", {100 * e.effect.confidence:.3g}% CI"
    note.append(seeds)
    if e.diverged:
        note.append(f"{e.diverged} diverged")
    if row.is_fix:
        note.append("the fix")
    ax.text(1.005, y, "  " + ", ".join(note), transform=ax.get_yaxis_transform(), fontsize=7.5, va="center",
            ha="left", color=color, clip_on=False)


def _legend(fig, head: Headline) -> None:
    from matplotlib.lines import Line2D

    shown = {_status(r) for r in head.rows}
    margin = f"within ±{num(head.margin)} {head.unit}" if head.margin is not None else "within the verdict's margin"
    words = {"established": "established (interval excludes 0)",
             "negligible": f"negligible ({margin})",
             "inconclusive": "inconclusive (more seeds would say)"}
    handles = []
    for status in ("established", "negligible", "inconclusive"):
        if status in shown or status != "negligible":
            marker, filled, _ = _STYLE[status]
            color = COLORS["settled"] if status == "established" else COLORS["open"]
            handles.append(Line2D([], [], marker=marker, color=color, markerfacecolor=color if filled else "white",
                                  linewidth=2.6, markersize=6, label=words[status]))
    if head.fix is not None:
        handles.append(Line2D([], [], marker="o", color=COLORS["fix"], linewidth=2.6, markersize=6,
                              label="smallest fix" if head.mode == "gap" else "best switch"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=7.5)


def headline_curves(head: Headline, refs: dict, out_png: str | Path, width: float = 5.2,
                    height: float = 5.6) -> Path | None:
    """Training loss (band over seeds) and validation loss (points) of the faulty base, the fix and the reference."""
    shown = [(role, v) for role, v in (("faulty", head.faulty), ("fix", head.fix), ("reference", head.reference))
             if v is not None and v.runs]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(width, height))
    paths = {role: {r.path for r in v.runs} for role, v in shown}
    lows, highs = [], []
    for role, v in shown:
        runs = [r.path for r in v.runs]
        label = (f"fix: {' + '.join(f'{f}={lv}' for f, lv in v.switches)}" if role == "fix" and v.switches
                 else v.name) + f" ({len(runs)} seeds)"
        same = role == "fix" and next((head.reference.name for other, p in paths.items()
                                       if other == "reference" and p == paths["fix"]), None)
        if same:
            label += f", the same runs as {same}"
        # The fix dashed and on top: where it is the reference's runs (or ends on them) both stay visible.
        style = "--" if role == "fix" else "-"
        line = seed_band(ax, runs, "loss", color=COLORS[role], label=label, linestyle=style)
        valid = seed_band(ax, runs, "val_loss", color=COLORS[role], linestyle=":", band=False)
        for drawn in (line, valid):
            if drawn is not None:
                data = np.asarray(drawn.get_ydata(), dtype=float)
                data = data[np.isfinite(data)]
                if len(data):  # the limits from each curve's lowest and highest points: every line whole
                    lows.append(data.min())
                    highs.append(data.max())
                if role == "fix":
                    drawn.set_zorder(3)
    baselines(ax, refs)
    ax.plot([], [], color="0.3", linestyle=":", marker="o", markersize=3, label="validation passes (dotted)")
    if lows:
        floor = min(lows + ([refs["bayes_floor"]] if refs.get("bayes_floor") is not None else []))
        top = max(highs + ([refs["ln_vocab"]] if refs.get("ln_vocab") is not None else []))
        pad = 0.06 * (top - floor or abs(top) or 1.0)
        ax.set_ylim(floor - pad, top + pad)  # a band of seeds that blew up may reach past it: cut at the frame
    ax.set_xlabel("step", fontsize=8.5)
    ax.set_ylabel(f"loss ({head.unit})", fontsize=8.5)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.95 / height, 1, 1))  # the legend below: the curves keep the whole frame
    return save(fig, out_png)
