"""Rules read off the loss curves: oscillation, plateau, overfitting."""

from __future__ import annotations

import math

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, Finding, RunView, late, series, steps_of

__all__ = ["oscillating_loss", "plateau", "overfitting"]


def oscillating_loss(view: RunView) -> Finding | None:
    """The training loss swings up and down by several percent between logged rows."""
    window = late(series(view, "loss"), T.OSCILLATION_WINDOW)
    if window is None or len(window) < T.MIN_ROWS + 1:
        return None
    values = window.to_numpy(dtype=float)
    diffs = np.diff(values)
    level = float(np.mean(np.abs(values)))
    if level <= 0:
        return None
    swing = float(np.mean(np.abs(diffs))) / level
    signs = np.sign(diffs[diffs != 0])
    flips = float(np.mean(signs[1:] != signs[:-1])) if len(signs) > 1 else 0.0
    if swing <= T.OSCILLATION_REL_SWING or flips < T.OSCILLATION_FLIPS:
        return None
    steps = steps_of(window)
    return Finding(
        id="oscillating-loss", kind="symptom", severity="medium",
        title=f"The loss oscillates: consecutive rows differ by {swing:.0%} on average",
        evidence=(Evidence("loss (mean |change| between rows / mean loss)", swing, T.OSCILLATION_REL_SWING, steps),
                  Evidence("loss (share of rows where the direction flips)", flips, T.OSCILLATION_FLIPS, steps)),
        explanation=("The loss keeps jumping up and down instead of settling: steps overshoot, so each update "
                     "undoes part of the previous one."),
        fix=("Lower the learning rate (by 2-10x) or anneal it when validation stops improving; clip gradients "
             "by global norm if spikes drive the swings."))


def plateau(view: RunView) -> Finding | None:
    """The loss stopped falling while still well above what the data allows."""
    window = late(series(view, "loss"), T.PLATEAU_WINDOW)
    if window is None or len(window) < T.MIN_ROWS:
        return None
    third = max(1, len(window) // 3)
    first, last = float(window.iloc[:third].mean()), float(window.iloc[-third:].mean())
    if first <= 0 or (first - last) / first >= T.PLATEAU_REL_DROP:
        return None
    floor, unigram = view.baseline("bayes_floor"), view.baseline("unigram_entropy")
    if floor is not None:
        reference, name, limit = floor, "summary.baselines.bayes_floor", floor + T.PLATEAU_GAP
    elif unigram is not None:
        # No floor known (text): a loss no better than word frequencies is surely not the best reachable.
        reference, name, limit = unigram, "summary.baselines.unigram_entropy", unigram - T.UNIGRAM_MARGIN
    else:
        return None
    if last < limit:
        return None
    steps = steps_of(window)
    drop = (first - last) / first
    return Finding(
        id="plateau", kind="symptom", severity="medium",
        title=f"The loss is flat at {last:.3f} nats, {last - reference:+.3f} from {name.rsplit('.', 1)[-1]}",
        evidence=(Evidence("loss (relative drop over the window)", drop, T.PLATEAU_REL_DROP, steps),
                  Evidence("loss (end of window)", last, limit, steps),
                  Evidence(name, reference, None)),
        explanation=("Training has stopped improving although the loss is still well above what the data "
                     "allows: the model is stuck, not finished."),
        fix=("Look at the root causes listed with this finding; if there are none, the step size is the "
             "first suspect (see update_ratio columns): raise the learning rate or anneal it later."))


def overfitting(view: RunView) -> Finding | None:
    """Validation loss rises from its best while training loss keeps falling."""
    valid, train = series(view, "valid_loss"), series(view, "loss")
    if valid is None or train is None or len(valid) < 1 + T.OVERFIT_MIN_VALIDATIONS_AFTER:
        return None
    best_step = int(valid.idxmin())
    best, final = float(valid.min()), float(valid.iloc[-1])
    after = valid[valid.index > best_step]
    if len(after) < T.OVERFIT_MIN_VALIDATIONS_AFTER or final - best < T.OVERFIT_RISE:
        return None
    before = train[train.index <= best_step]
    at_best = float(before.iloc[-1]) if len(before) else float(train.iloc[0])
    train_end = late(train[train.index > best_step])
    if train_end is None:
        return None
    drop = at_best - float(train_end.mean())
    if not math.isfinite(drop) or drop < T.OVERFIT_TRAIN_DROP:
        return None
    last_step = int(valid.index[-1])
    return Finding(
        id="overfitting", kind="symptom", severity="medium",
        title=f"Overfitting: validation loss up {final - best:.3f} nats since step {best_step}",
        evidence=(Evidence("valid_loss (best)", best, None, (best_step, best_step)),
                  Evidence("valid_loss (final - best)", final - best, T.OVERFIT_RISE, (best_step, last_step)),
                  Evidence("loss (drop since the best validation)", drop, T.OVERFIT_TRAIN_DROP,
                           (best_step, int(train.index[-1])))),
        explanation=("Since the best validation the model keeps fitting the training data but does worse on "
                     "held-out data: it memorises rather than generalises."),
        fix=(f"Keep the weights from step {best_step} (early stopping on validation loss), and regularise: "
             "dropout, weight decay, a smaller model, or more data."))
