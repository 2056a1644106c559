"""Rules about what the model attends to and whether its input matters at all."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, Finding, RunView, final_loss, hop_columns, late, number, series, steps_of

__all__ = ["ignores_input", "attention_uniform", "attention_collapsed"]


def ignores_input(view: RunView) -> Finding | None:
    """The loss is no better than word frequencies and destroying the input does not hurt."""
    unigram, final = view.baseline("unigram_entropy"), final_loss(view)
    if unigram is None or final is None or final[1] < unigram - T.UNIGRAM_MARGIN:
        return None
    columns = ("probe_loss_real", "probe_loss_shuffled", "probe_loss_zeroed")
    if not all(c in view.metrics.columns for c in columns):
        return None
    probes = view.metrics[["step", *columns]].apply(pd.to_numeric, errors="coerce")
    probes = probes[np.isfinite(probes[list(columns)]).all(axis=1)]
    if probes.empty:
        return None
    last = probes.iloc[-1]
    real, shuffled, zeroed = (float(last[c]) for c in columns)
    if shuffled > real + T.PROBE_MARGIN or zeroed > real + T.PROBE_MARGIN:
        return None
    step = int(last["step"])
    return Finding(
        id="ignores-input", kind="symptom", severity="high",
        title="The model ignores its input: shuffled or blank inputs do as well as real ones",
        evidence=(Evidence(final[0], final[1], unigram - T.UNIGRAM_MARGIN),
                  Evidence("summary.baselines.unigram_entropy", unigram, None),
                  Evidence("probe_loss_real", real, None, (step, step)),
                  Evidence("probe_loss_shuffled", shuffled, real + T.PROBE_MARGIN, (step, step)),
                  Evidence("probe_loss_zeroed", zeroed, real + T.PROBE_MARGIN, (step, step))),
        explanation=(f"The loss ({final[1]:.3f} nats) is no better than predicting word frequencies "
                     f"({unigram:.3f} nats), and the probe batch scores the same with its inputs shuffled "
                     "across examples or replaced by padding: nothing the model reads reaches its output."),
        fix=("Fix the root causes listed with this finding first; then check that the context path reaches "
             "the output (e.g. predictions for two different windows should differ)."))


def attention_uniform(view: RunView) -> Finding | None:
    """Late attention entropy close to its maximum on every hop, with loss left to lose."""
    hops = hop_columns(view, "attn_entropy")
    windows = {k: late(series(view, column)) for k, column in hops.items()}
    if not windows or any(w is None for w in windows.values()):
        return None
    means = {k: float(w.mean()) for k, w in windows.items()}
    if min(means.values()) < T.UNIFORM_ENTROPY:
        return None
    floor, final = view.baseline("bayes_floor"), final_loss(view)
    if floor is not None and final is not None and final[1] <= floor + T.FLOOR_MARGIN:
        return None  # nothing left to learn: uniform attention costs nothing
    evidence = [Evidence(hops[k], means[k], T.UNIFORM_ENTROPY, steps_of(windows[k])) for k in means]
    if floor is not None and final is not None:
        evidence.append(Evidence(final[0], final[1], floor + T.FLOOR_MARGIN))
    return Finding(
        id="attention-uniform", kind="symptom", severity="medium",
        title=f"Attention stays uniform on all {len(means)} hop(s)",
        evidence=tuple(evidence),
        explanation=("Normalised attention entropy near 1 means every hop spreads its weight evenly over the "
                     "memory: the read-out is an average of the window, whatever the query, so the hops "
                     "select nothing."),
        fix=("Give the match scores room to differ: embeddings at a usable scale (N(0, 0.05) in the paper), "
             "no temporal encoding or padding dominating the memories, and enough learning rate for A and "
             "the query path to move."))


def _gain(view: RunView) -> float | None:
    """How far the final loss got from the unigram entropy towards the Bayes floor (0 none, 1 all)."""
    unigram, floor, final = view.baseline("unigram_entropy"), view.baseline("bayes_floor"), final_loss(view)
    if unigram is None or floor is None or final is None or unigram - floor <= 0:
        return None
    return (unigram - final[1]) / (unigram - floor)


def _position_columns(frame: pd.DataFrame) -> list[str]:
    return sorted((c for c in frame.columns if re.fullmatch(r"pos\d+", str(c))), key=lambda c: int(c[3:]))


def attention_collapsed(view: RunView) -> Finding | None:
    """One memory slot wins the attention on a hop whatever the content (from attention.csv)."""
    gain = _gain(view)
    if gain is not None and gain >= T.COLLAPSED_MAX_GAIN:
        return None  # learning well: a fixed winner is what this data rewards
    frame = view.attention
    if frame is None or frame.empty or "hop" not in frame.columns or "step" not in frame.columns:
        return None
    positions = _position_columns(frame)
    if len(positions) < 2:
        return None
    evidence, worst = [], 0.0
    top1 = hop_columns(view, "attn_top1")
    for hop, rows in frame.sort_values("step").groupby("hop"):
        rows = late(rows.set_index("step"))
        counts = rows[positions].apply(pd.to_numeric, errors="coerce").fillna(0).sum(axis=0)
        total = float(counts.sum())
        if total <= 0:
            continue
        share = float(counts.max()) / total
        if share < T.COLLAPSED_SHARE:
            continue
        label = int(hop) if number(hop) is not None else hop
        winner = str(counts.idxmax())
        last = " (the current word)" if winner == positions[-1] else ""
        worst = max(worst, share)
        evidence.append(Evidence(f"attention.csv hop{label} {winner}{last}", share,
                                 T.COLLAPSED_SHARE, steps_of(rows)))
        column = top1.get(label)
        window = late(series(view, column)) if column else None
        if window is not None:
            evidence.append(Evidence(column, float(window.mean()), T.COLLAPSED_TOP1, steps_of(window)))
    if not evidence:
        return None
    if gain is not None:
        evidence.append(Evidence("share of the unigram-to-floor gap gained", gain, T.COLLAPSED_MAX_GAIN))
    return Finding(
        id="attention-collapsed", kind="symptom", severity="medium",
        title=f"Attention collapsed onto one memory slot ({worst:.0%} of the wins)",
        evidence=tuple(evidence),
        explanation=("Late in training the same slot wins the attention on almost every example, whatever the "
                     "words in the window: the hop has become a fixed position selector and reads no content."),
        fix=("Look for what makes position outweigh content in the match scores: a dominating temporal "
             "encoding, encoded padding, or a linear map on the scores; fix that rather than the attention."))
