"""The report's evidence figures, each declared once: the figures a finding can point at.

A rule names one by its id (``@rule(..., figure="updates")``); the report draws one
of each it has data for: on each run's page, side by side on the index (under the
title and caption declared here), and beside a suspect's contrast (in the words of
``evidence``). Everything else about a figure is derived from :data:`TABLE`: the
ids a rule may name (:data:`FIGURES`), the order of a run's panels, the panels
beside a contrast. How a figure is drawn is the report's (:mod:`diagnose.reports.panels`):
a family panel by default, one line per column; ``loss`` and ``attention-map`` have
charts of their own, keyed by id.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Figure", "TABLE", "FIGURES", "BY_ID", "FAMILIES", "RUN_ORDER", "CONTRAST_DEFAULTS"]


@dataclass(frozen=True)
class Figure:
    """One evidence figure: what it is called, what it shows and what it is drawn from."""

    id: str  # what a rule's ``figure=`` names, and the anchor ``fig-ID`` on the report's index
    panel: str  # the title of its panel (on a run's page, a side-by-side row, a suspect's contrast)
    title: str  # its section's title on the index
    caption: str  # under it on the index: what it shows and what to look for
    evidence: str = ""  # the same in a phrase, for a suspect's caption when it shows a contrast's evidence
    columns: tuple[str, ...] = ()  # the metrics.csv columns (by prefix) its family panel draws; () a chart of its own
    ylabel: str = ""  # its family panel's y axis
    log: bool = False  # a log y axis where the values span more than a decade
    pair: bool = False  # two panels (early and late training): after the single ones, so those fill the rows
    contrast: bool = False  # beside every contrast whose findings point at no figure (what the built-in case shows)
    run_caption: str = ""  # its part of a run page's caption (default: its panel's title)
    alt: str = ""  # its words in a run figure's alt text (default: its panel's title)


# In the index's reading order: the curve, then what moves the weights, then what the model computes.
TABLE = (
    Figure("loss", "Loss", "Loss",
           "Training and validation loss of each run (runs that differ only by seed form one band).",
           alt="loss"),
    Figure("gradients", "Gradient norms", "Gradient norms per variable",
           "L2 norm of each variable's gradient before clipping (log scale). Look for norms that grow by orders of "
           "magnitude (exploding), collapse towards zero (vanishing), or sit far below the others.",
           evidence="the global gradient norm before clipping (log scale)",
           columns=("grad_norm/",), ylabel="L2 norm before clipping", log=True,
           run_caption="gradient norms per variable before clipping", alt="gradient norms"),
    Figure("updates", "Update-to-weight ratios", "Update-to-weight ratios",
           "||Δw|| / ||w|| per step (log scale); around 1e-3 is a healthy step. A mean-reduced loss with a rate tuned "
           "for a summed one shows as ratios one to two orders of magnitude lower.",
           evidence="update-to-weight ratios ||Δw|| / ||w|| (log scale); around 1e-3 is a healthy step",
           columns=("update_ratio/",), ylabel="||Δw|| / ||w||", log=True,
           run_caption="update-to-weight ratios", alt="update ratios"),
    Figure("attention-entropy", "Attention entropy", "Attention entropy per hop",
           "Entropy of each hop's attention over ln(number of real slots): 1 is uniform, near 0 is one slot.",
           evidence="attention entropy over ln(slots): 1 reads an average of the window, near 0 one slot",
           columns=("attn_entropy/",), ylabel="entropy / ln(slots)",
           run_caption="attention entropy per hop", alt="attention"),
    Figure("attention-map", "Where attention lands", "Where attention lands, early vs late",
           "Share of each interval's examples whose attention peaked on each memory slot, per hop (right: the current "
           "word). Content-driven attention spreads with the input; one bright column is attention fixed on a "
           "position.",
           evidence="where attention lands late in training: the share of each hop's winning slot (right: the "
                    "current word); one bright column whatever the input is attention fixed on a position",
           pair=True, contrast=True,
           run_caption="where attention lands early and late in training (right: the current word)", alt="attention"),
    Figure("branches", "Branch balance", "Branch balance",
           "RMS of what is added together: a position table against the content it is added to, and an H term "
           "against the read-out (log scale). A table far above its content drowns it.",
           evidence="branch balance: the RMS of a position table (dashed) against the content it is added to "
                    "(solid); a table far above its content drowns it",
           columns=("rms/",), ylabel="RMS", log=True, contrast=True,
           run_caption="branch balance (a position table against its content; an H term against the read-out)",
           alt="branch balance"),
    Figure("output", "Output health", "Output health",
           "Share of output units exactly zero, of targets at the 1e-7 clip floor, mean top and target probability. "
           "Dead outputs and targets at the floor mean the output is not a distribution the loss can train.",
           evidence="output health: the share of dead output units (solid) and of targets at the cross-entropy's "
                    "clip floor (dashed)",
           columns=("out_zero_frac", "target_at_floor", "max_prob", "target_prob"), ylabel="share / prob.",
           run_caption="output health", alt="output health"),
)

FIGURES = tuple(f.id for f in TABLE)  # the ids a rule's ``figure=`` may name
BY_ID = {f.id: f for f in TABLE}
FAMILIES = tuple(f.id for f in TABLE if f.columns)  # drawn by the family panel from their columns
RUN_ORDER = tuple(f.id for f in sorted(TABLE, key=lambda f: f.pair))  # a run's page: single panels, then pairs
# Beside a contrast whose findings point nowhere, in the same order as on a run's page.
CONTRAST_DEFAULTS = tuple(fid for fid in RUN_ORDER if BY_ID[fid].contrast)
