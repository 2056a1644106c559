"""Rules read off the loss curves: oscillation, plateau, overfitting."""

from __future__ import annotations

import math

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, baseline_name, constant_loss, late, loss_scale, series,
                                    start_loss, steps_of)
from diagnose.findings.fixes import fix, lower_rate
from diagnose.findings.registry import Hit, rule

__all__ = ["oscillating_loss", "plateau", "overfitting"]

# Oscillation: over the last half of the rows, consecutive logged losses differ by
# more than 5% of the loss the run started from on average, and the direction flips
# on at least half the rows. Logged losses are means over many steps, so their noise
# is ~1% of the starting loss. Measured against the starting loss, not the current
# one: a healthy run whose loss nears 0 swings by a large fraction of almost nothing.
OSCILLATION_WINDOW = 0.5
OSCILLATION_REL_SWING = 0.05
OSCILLATION_FLIPS = 0.5
# ... and the swings are three times what minibatch noise alone gives between two
# logged means (their per-step spread, loss_sd, over the square root of the steps
# they average): small batches logged every few steps swing by noise, not by overshoot.
OSCILLATION_NOISE = 3.0
# A plateau (the loss flat over thresholds.PLATEAU_WINDOW) is a symptom while the loss is still
# 0.25 nats above the Bayes floor (a 28% higher perplexity than the
# best reachable), or no better than the unigram entropy when the floor is unknown.
PLATEAU_GAP = 0.25
# Overfitting: the final validation loss at least 0.05 nats above its best, seen at
# two or more validations after the best, while the training loss fell by at least
# 0.02 nats since then (logged losses are precise to ~0.01 nats). For a squared error
# both are shares of the targets' variance (base.loss_scale): the validation R^2 fell
# by 0.05 from its best while the training R^2 rose by 0.02.
OVERFIT_RISE = 0.05
OVERFIT_MIN_VALIDATIONS_AFTER = 2
OVERFIT_TRAIN_DROP = 0.02


def _row_noise(view: RunView, window) -> float | None:
    """The mean |difference| between consecutive logged losses that minibatch noise alone gives.

    A logged loss averages the n steps since the row before, whose losses spread by
    ``loss_sd``: its noise is sd / sqrt(n). Two independent such means, of n1 and n2
    steps, differ by sqrt(2 / pi) * sd * sqrt(1 / n1 + 1 / n2) on average: rows cut
    short at an epoch's end (5 steps beside 20) swing more, and are expected to.
    """
    sd = series(view, "loss_sd")
    loss = series(view, "loss")
    if sd is None or loss is None:
        return None
    steps = loss.index.to_numpy()
    spans = dict(zip(steps, np.diff(steps, prepend=0)))  # steps each row averages
    sd = sd.reindex(window.index)
    index = window.index.to_numpy()
    pairs = [(a, b) for a, b in zip(index[:-1], index[1:]) if np.isfinite(sd[a]) and np.isfinite(sd[b])]
    if not pairs:
        return None
    return float(np.mean([math.sqrt(2.0 / math.pi) * 0.5 * (sd[a] + sd[b])
                          * math.sqrt(1.0 / max(spans[a], 1) + 1.0 / max(spans[b], 1)) for a, b in pairs]))


@rule("oscillating-loss", kind="symptom", severity="medium", figure="loss",
      what="the training loss swinging up and down between logged rows by a large share of where it started")
def oscillating_loss(view: RunView) -> Hit | None:
    window = late(series(view, "loss"), OSCILLATION_WINDOW)
    start = start_loss(view)
    if window is None or len(window) < T.MIN_ROWS + 1 or start is None or start <= 0:
        return None
    values = window.to_numpy(dtype=float)
    diffs = np.diff(values)
    swing = float(np.mean(np.abs(diffs))) / start
    signs = np.sign(diffs[diffs != 0])
    flips = float(np.mean(signs[1:] != signs[:-1])) if len(signs) > 1 else 0.0
    if swing <= OSCILLATION_REL_SWING or flips < OSCILLATION_FLIPS:
        return None
    noise = _row_noise(view, window)
    if noise is not None and float(np.mean(np.abs(diffs))) <= OSCILLATION_NOISE * noise:
        return None  # swings minibatch noise explains: small batches logged often
    steps = steps_of(window)
    return Hit(
        title=f"The loss oscillates: consecutive rows differ by {swing:.0%} of the starting loss on average",
        evidence=(Evidence("loss (mean |change| between rows / starting loss)", swing, OSCILLATION_REL_SWING,
                           steps),
                  Evidence("loss (share of rows where the direction flips)", flips, OSCILLATION_FLIPS, steps),
                  Evidence("starting loss", start, None)),
        explanation=("The loss keeps jumping up and down instead of settling: steps overshoot, so each update "
                     "undoes part of the previous one."),
        fix=("Lower the learning rate (by 2-10x) or anneal it when validation stops improving; clip gradients "
             "by global norm if spikes drive the swings."))


# Overshooting makes the loss swing: the symptom gets huge-steps' fix, so the two share their runs.
fix("oscillating-loss", what="the learning rate lowered as for huge-steps (overshooting makes the loss swing)")(
    lower_rate)


@rule("plateau", kind="symptom", severity="medium", figure="loss",
      what="the loss flat while still well above what the data allows")
def plateau(view: RunView) -> Hit | None:
    window = late(series(view, "loss"), T.PLATEAU_WINDOW)
    if window is None or len(window) < T.MIN_ROWS:
        return None
    third = max(1, len(window) // 3)
    first, last = float(window.iloc[:third].mean()), float(window.iloc[-third:].mean())
    if first <= 0 or (first - last) / first >= T.PLATEAU_REL_DROP:
        return None
    # Trained on weighted examples, the loss is not comparable with the unweighted constant's.
    weighted = bool((view.summary.get("contract") or {}).get("weighted")) \
        if isinstance(view.summary.get("contract"), dict) else False
    floor, constant = view.baseline("bayes_floor"), None if weighted else constant_loss(view)
    if floor is not None:
        reference, name, limit = floor, "summary.baselines.bayes_floor", floor + PLATEAU_GAP
    elif constant is not None:
        # No floor known (text, a user's data): a loss no better than ignoring the input is surely not the
        # best reachable.
        name, reference, limit = constant.baseline, constant.value, constant.value - constant.margin
    else:
        return None
    if last < limit:
        return None
    steps = steps_of(window)
    drop = (first - last) / first
    return Hit(
        title=f"The loss is flat at {last:.3f} {view.unit}, {last - reference:+.3f} from {baseline_name(view, name)}",
        evidence=(Evidence("loss (relative drop over the window)", drop, T.PLATEAU_REL_DROP, steps),
                  Evidence("loss (end of window)", last, limit, steps),
                  Evidence(name, reference, None)),
        explanation=("Training has stopped improving although the loss is still well above what the data "
                     "allows: the model is stuck, not finished."),
        fix=("Look at the root causes listed with this finding; if there are none, the step size is the "
             "first suspect (see update_ratio columns): raise the learning rate or anneal it later."))


@rule("overfitting", kind="symptom", severity="medium", figure="loss",
      what="validation loss rising from its best while the training loss keeps falling")
def overfitting(view: RunView) -> Hit | None:
    valid, train = series(view, "val_loss"), series(view, "loss")
    if valid is None or train is None or len(valid) < 1 + OVERFIT_MIN_VALIDATIONS_AFTER:
        return None
    best_step = int(valid.idxmin())
    best, final = float(valid.min()), float(valid.iloc[-1])
    after = valid[valid.index > best_step]
    rise, train_drop = OVERFIT_RISE * loss_scale(view), OVERFIT_TRAIN_DROP * loss_scale(view)
    if len(after) < OVERFIT_MIN_VALIDATIONS_AFTER or final - best < rise:
        return None
    before = train[train.index <= best_step]
    at_best = float(before.iloc[-1]) if len(before) else float(train.iloc[0])
    train_end = late(train[train.index > best_step])
    if train_end is None:
        return None
    drop = at_best - float(train_end.mean())
    if not math.isfinite(drop) or drop < train_drop:
        return None
    last_step = int(valid.index[-1])
    return Hit(
        title=f"Overfitting: validation loss up {final - best:.3f} {view.unit} since step {best_step}",
        evidence=(Evidence("val_loss (best)", best, None, (best_step, best_step)),
                  Evidence("val_loss (final - best)", final - best, rise, (best_step, last_step)),
                  Evidence("loss (drop since the best validation)", drop, train_drop,
                           (best_step, int(train.index[-1])))),
        explanation=("Since the best validation the model keeps fitting the training data but does worse on "
                     "held-out data: it memorises rather than generalises."),
        fix=(f"Keep the weights from step {best_step} (early stopping on validation loss), and regularise: "
             "dropout, weight decay, a smaller model, or more data."))
