"""Rules about what the model attends to and whether its input matters at all."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, baseline_name, constant_loss, final_loss, hop_columns, late,
                                    number, progress, series, steps_of)
from diagnose.findings.registry import Hit, rule

__all__ = ["ignores_input", "attention_uniform", "attention_collapsed"]

# Normalised entropy >= 0.95 on every hop: attention is within 5% of uniform over the
# real slots, i.e. the hops average the window instead of selecting from it.
UNIFORM_ENTROPY = 0.95
# One slot winning >= 90% of the argmaxes on a hop, late in training: the winner is
# fixed whatever the content.
COLLAPSED_SHARE = 0.9
# ... reported only while the model has gained less than half of what it can (of the
# way from the unigram entropy down to the Bayes floor): when one relative position
# decides the next word (the previous word, a copy lag), a fixed winner is the right
# answer, and paper-config runs on the synthetic corpora do that while getting most
# of the way to the floor.
COLLAPSED_MAX_GAIN = 0.5
# "At the floor": within 0.05 nats of the Bayes floor there is nothing left to
# learn, so uniform attention is then no symptom.
FLOOR_MARGIN = 0.05
# Mean top-1 weight >= 0.95: attention is one-hot; reported beside a collapse.
COLLAPSED_TOP1 = 0.95


@rule("ignores-input", kind="symptom", severity="high", figure="loss",
      what="a loss no better than predicting without the input, and shuffled inputs that cost nothing")
def ignores_input(view: RunView) -> Hit | None:
    reference, final = constant_loss(view), final_loss(view)
    if reference is None or final is None:
        return None
    baseline, value, margin = reference.baseline, reference.value, reference.margin
    if final[1] < value - margin:
        return None
    columns = ("probe_loss_real", "probe_loss_shuffled")
    if not all(c in view.metrics.columns for c in columns):
        return None
    wanted = [*columns, "probe_loss_zeroed"] if "probe_loss_zeroed" in view.metrics.columns else list(columns)
    probes = view.metrics[["step", *wanted]].apply(pd.to_numeric, errors="coerce")
    probes = probes[np.isfinite(probes[list(columns)]).all(axis=1)]
    if probes.empty:
        return None
    last = probes.iloc[-1]
    real, shuffled = float(last["probe_loss_real"]), float(last["probe_loss_shuffled"])
    if shuffled > real + reference.probe_margin:
        return None
    step = int(last["step"])
    evidence = [Evidence(final[0], final[1], value - margin), Evidence(baseline, value, None),
                Evidence("probe_loss_real", real, None, (step, step)),
                Evidence("probe_loss_shuffled", shuffled, real + reference.probe_margin, (step, step))]
    if "probe_loss_zeroed" in last and np.isfinite(last["probe_loss_zeroed"]):
        evidence.append(Evidence("probe_loss_zeroed", float(last["probe_loss_zeroed"]), None, (step, step)))
    what = "word frequencies" if view.model.get("kind") != "keras" else "the targets' own distribution"
    named = baseline_name(view, baseline) + (":" if view.is_keras else "")
    return Hit(
        title="The model ignores its input: inputs shuffled across examples do as well as the real ones",
        evidence=evidence,
        explanation=(f"The loss ({final[1]:.3f}) is no better than predicting {what} ({named} "
                     f"{value:.3f}), and the probe batch scores the same when every example gets another "
                     "example's input: nothing the model reads reaches its output, or the targets do not depend "
                     "on the inputs."),
        fix=("Fix the root causes listed with this finding first; if there are none, check the data: are the "
             "targets aligned with the inputs (shuffled or sorted separately, a wrong column)? Then check that "
             "the input path reaches the output (predictions for two different inputs should differ)."))


@rule("attention-uniform", kind="symptom", severity="medium", figure="attention-entropy",
      what="attention spread evenly over every slot on every hop, late in training")
def attention_uniform(view: RunView) -> Hit | None:
    hops = hop_columns(view, "attn_entropy")
    windows = {k: late(series(view, column)) for k, column in hops.items()}
    if not windows or any(w is None for w in windows.values()):
        return None
    means = {k: float(w.mean()) for k, w in windows.items()}
    if min(means.values()) < UNIFORM_ENTROPY:
        return None
    floor, final = view.baseline("bayes_floor"), final_loss(view)
    if floor is not None and final is not None and final[1] <= floor + FLOOR_MARGIN:
        return None  # nothing left to learn: uniform attention costs nothing
    got = progress(view)
    if got is not None and got >= T.CONVERGED_PROGRESS:
        return None  # the model got most of the way: it needs no selective attention for this data
    evidence = [Evidence(hops[k], means[k], UNIFORM_ENTROPY, steps_of(windows[k])) for k in means]
    if floor is not None and final is not None:
        evidence.append(Evidence(final[0], final[1], floor + FLOOR_MARGIN))
    return Hit(
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


@rule("attention-collapsed", kind="symptom", severity="medium", figure="attention-map",
      what="one memory slot winning the attention on a hop whatever the content")
def attention_collapsed(view: RunView) -> Hit | None:
    gain = _gain(view)
    if gain is not None and gain >= COLLAPSED_MAX_GAIN:
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
        if share < COLLAPSED_SHARE:
            continue
        label = int(hop) if number(hop) is not None else hop
        winner = str(counts.idxmax())
        last = " (the current word)" if winner == positions[-1] else ""
        worst = max(worst, share)
        evidence.append(Evidence(f"attention.csv hop{label} {winner}{last}", share,
                                 COLLAPSED_SHARE, steps_of(rows)))
        column = top1.get(label)
        window = late(series(view, column)) if column else None
        if window is not None:
            evidence.append(Evidence(column, float(window.mean()), COLLAPSED_TOP1, steps_of(window)))
    if not evidence:
        return None
    if gain is not None:
        evidence.append(Evidence("share of the unigram-to-floor gap gained", gain, COLLAPSED_MAX_GAIN))
    return Hit(
        title=f"Attention collapsed onto one memory slot ({worst:.0%} of the wins)",
        evidence=tuple(evidence),
        explanation=("Late in training the same slot wins the attention on almost every example, whatever the "
                     "words in the window: the hop has become a fixed position selector and reads no content."),
        fix=("Look for what makes position outweigh content in the match scores: a dominating temporal "
             "encoding, encoded padding, or a linear map on the scores; fix that rather than the attention."))
