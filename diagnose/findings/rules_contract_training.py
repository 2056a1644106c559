"""Rules about what fit is given: labels that one class dominates, and too few steps to learn in.

Both are named only in a run that failed or learned little: a model that learned its
task with imbalanced labels, or in the epochs it had, is not why anything failed.
"""

from __future__ import annotations

import math

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, contract, contract_targets, late, number, series, start_loss,
                                    steps_of, weight_matrices)
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.outcome import at_chance, failure, underperformed
from diagnose.findings.registry import Hit, rule
from diagnose.findings.rules_contract import fact

__all__ = ["class_imbalance", "too_few_steps"]

# The largest class holding 90% of the labels or more: always predicting it is right 90%
# of the time, and the other classes' examples give at most a tenth of the gradient.
IMBALANCE_SHARE = 0.9
# Still falling at the end: over the last 30% of the logged rows (PLATEAU_WINDOW) the
# training loss fell by 5% of itself or more, five times what the plateau rule calls flat
# (PLATEAU_REL_DROP) and well above the ~1% noise of logged means: going down, not stuck.
STILL_FALLING = 0.05
# ... at half the run's mean rate of fall since step 0 or more: a run cut short in its steep
# part falls as fast at the end as on average (ratio ~1); one that trained long enough has
# bent over (a decaying curve's late rate is a small fraction of its mean rate).
LEVELLING = 0.5


@rule("class-imbalance", scope="output", kind="root-cause", severity="medium", figure="loss",
      what="one class holding nearly all the labels, and a model that predicts it for everything",
      explains=("ignores-input", "plateau"))
def class_imbalance(view: RunView) -> Hit | None:
    targets = contract_targets(view)
    share = number(targets.get("majority_share"))
    if share is None or share < IMBALANCE_SHARE or contract(view).get("weighted"):
        return None
    chance = at_chance(view)
    if chance is None:
        return None
    return Hit(
        title=(f"Class {targets.get('majority_class')} holds {share:.0%} of the labels, and the model predicts "
               "no better than always choosing it"),
        evidence=[fact("targets.majority_share", share, IMBALANCE_SHARE), *chance.evidence],
        explanation=(f"Always predicting the largest class is right {share:.0%} of the time and costs little "
                     "loss; the other classes' examples give at most a tenth of the gradient, so the model settles "
                     "on the prior before it learns to tell them apart (its accuracy looks high, and says nothing)."),
        fix=("Weight the classes (fit(..., class_weight={c: n / (k * n_c)}) ), or resample to balance the batches; "
             "judge the model by per-class recall or AUC rather than accuracy."))


@fix("class-imbalance", what="classes weighted by the inverse of their share of the training labels",
     judged_by="task")
def _class_imbalance(view):
    return Remedy({"op": "fit", "class_weight": "balanced"}, "balanced", "classes weighted (balanced)")


@rule("too-few-steps", kind="root-cause", severity="medium", figure="loss",
      what="training that stopped while the loss was still falling as fast as on average, at healthy step sizes, "
           "having learned little (too few epochs; a symptom where the run did not fail)",
      explains=("plateau", "ignores-input"))
def too_few_steps(view: RunView) -> Hit | None:
    window = late(series(view, "loss"), T.PLATEAU_WINDOW)
    if window is None or len(window) < T.MIN_ROWS or view.summary.get("status") == "diverged" \
            or isinstance(view.summary.get("diverged_at"), dict):
        return None  # (a run that blew up was not learning its way down when it stopped)
    third = max(1, len(window) // 3)
    first, last = float(window.iloc[:third].mean()), float(window.iloc[-third:].mean())
    if not (first > 0 and math.isfinite(last)) or (first - last) / first < STILL_FALLING:
        return None
    start = start_loss(view)
    steps_between = float(window.index[-third:].to_series().mean() - window.index[:third].to_series().mean())
    end_step = float(window.index[-third:].to_series().mean())
    if start is None or steps_between <= 0 or end_step <= 0 or start <= last:
        return None
    late_rate, mean_rate = (first - last) / steps_between, (start - last) / end_step
    if late_rate < LEVELLING * mean_rate:
        return None  # the curve has bent: the run is levelling off, not cut short in its steep part
    ratios = [float(late(s).mean()) for c in weight_matrices(view) if (s := series(view, c)) is not None]
    if ratios and float(np.median(ratios)) < T.HEALTHY_UPDATE_RATIO:
        return None  # steps too small to call the budget the cause: tiny-steps'
    short = underperformed(view)
    if short is None:
        return None
    failed = failure(view)
    steps = int(view.summary.get("steps") or window.index[-1])
    drop = (first - last) / first
    return Hit(
        # The budget is why a run failed only where it failed; where it learned something, still
        # falling is what the run shows (more epochs would help), not the cause of a failure.
        kind=None if failed is not None else "symptom", severity=None if failed is not None else "low",
        title=f"Training stopped while the loss was still falling ({drop:.0%} over the last 30% of {steps} steps)",
        evidence=[Evidence("loss (relative drop over the last 30% of rows)", drop, STILL_FALLING,
                           steps_of(window)),
                  Evidence("loss's late rate of fall / its mean rate since step 0", late_rate / mean_rate,
                           LEVELLING, steps_of(window)),
                  short, fact("epochs", contract(view).get("epochs"))]
                 + ([Evidence("update_ratio/* (median of the weight matrices, late)", float(np.median(ratios)),
                              T.HEALTHY_UPDATE_RATIO, steps_of(window))] if ratios else []),
        explanation=("The loss was still going down when training ended, as fast as it had on average since "
                     "the start (the curve had not begun to level off), at step sizes that are not small: the "
                     "model had not finished learning, and it got less than half of the way from where it "
                     "started to the best it could reach."),
        fix="Train for more epochs (several times as many), with early stopping on the validation loss.")


@fix("too-few-steps", what="four times the epochs")
def _too_few_steps(view):
    return Remedy({"op": "fit", "epochs_factor": 4}, "epochs x4", "four times the epochs")
